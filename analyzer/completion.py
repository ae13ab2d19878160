"""Shell completion scripts (``oauth-analyzer completion bash|zsh``), made from the parser itself.

The scripts are static: the commands, each command's options, the choices an option takes and
file names for paths, so completing never starts Python.
"""

from __future__ import annotations

import argparse

#: Options whose value is a file or folder name.
_PATHS = ("-o", "--output", "--keys", "--tls-keylog", "--charts", "--policy", "--write")


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Command name -> its sub-parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(sub: argparse.ArgumentParser) -> tuple[list[str], dict[str, list[str]]]:
    """(every option string, option -> its choices) of one command, hidden ones left out."""
    names: list[str] = []
    choices: dict[str, list[str]] = {}
    for action in sub._actions:
        if action.help == argparse.SUPPRESS:
            continue
        names += action.option_strings
        if action.choices and action.option_strings:
            for flag in action.option_strings:
                choices[flag] = [str(c) for c in action.choices]
    return names, choices


def _repeatable(action: argparse.Action) -> bool:
    """May the option be given again, to add values (``append``, or a list option's union,
    ``cli._Union``)? zsh offers an option once unless its spec says so."""
    return isinstance(action, argparse._AppendAction) or getattr(action, "repeatable", False)


def bash_script(parser: argparse.ArgumentParser, prog: str) -> str:
    """A bash completion script (``source <(oauth-analyzer completion bash)``)."""
    func = "_" + prog.replace("-", "_")
    cases = []
    for name, sub in commands(parser).items():
        options, choices = _options(sub)
        lines = [f"    {name})"]
        for flag, values in choices.items():
            lines.append(
                f'      if [ "$prev" = "{flag}" ]; then '
                f'COMPREPLY=($(compgen -W "{" ".join(values)}" -- "$cur")); return; fi'
            )
        paths = "|".join(f for f in _PATHS if f in options)
        if paths:
            lines.append(f'      case "$prev" in {paths}) COMPREPLY=($(compgen -f -- "$cur")); '
                         "return;; esac")  # fmt: skip
        lines.append(
            f'      if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "{" ".join(options)}" '
            '-- "$cur")); else COMPREPLY=($(compgen -f -- "$cur")); fi'
        )
        lines.append("      ;;")
        cases.append("\n".join(lines))
    names = " ".join(commands(parser))
    body = "\n".join(cases)
    return f"""# bash completion for {prog}
{func}() {{
  local cur prev cmd
  cur="${{COMP_WORDS[COMP_CWORD]}}"
  prev="${{COMP_WORDS[COMP_CWORD-1]}}"
  cmd="${{COMP_WORDS[1]}}"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "{names} --version --help" -- "$cur"))
    return
  fi
  case "$cmd" in
{body}
  esac
}}
complete -o filenames -F {func} {prog}
"""


def zsh_script(parser: argparse.ArgumentParser, prog: str) -> str:
    """A zsh completion script (``source <(oauth-analyzer completion zsh)``)."""
    func = "_" + prog.replace("-", "_")
    described = []
    cases = []
    for name, sub in commands(parser).items():
        text = (sub.description or "").split(".")[0].replace("'", "").replace(":", " -")[:60]
        described.append(f"    '{name}:{text}'")
        options, choices = _options(sub)
        again = {f for a in sub._actions if _repeatable(a) for f in a.option_strings}
        specs = []
        for flag in options:
            star = "*" if flag in again else ""
            if flag in choices:
                specs.append(f"'{star}{flag}[]:value:({' '.join(choices[flag])})'")
            elif flag in _PATHS:
                specs.append(f"'{star}{flag}[]:path:_files'")
            else:
                specs.append(f"'{star}{flag}[]'")
        specs.append("'*:capture:_files'")
        cases.append(f"    {name}) _arguments {' '.join(specs)} ;;")
    return f"""#compdef {prog}
# zsh completion for {prog}
{func}() {{
  local -a commands
  commands=(
{chr(10).join(described)}
  )
  if (( CURRENT == 2 )); then
    _describe 'command' commands
    return
  fi
  case "$words[2]" in
{chr(10).join(cases)}
  esac
}}
compdef {func} {prog}
"""
