"""Where packets come from: capture files and pipes (``pcapfile``), link layers, tshark (TLS
decryption), and live interfaces. A new input format goes here."""
