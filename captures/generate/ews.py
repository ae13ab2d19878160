"""Exchange Web Services SOAP bodies (GetFolder, CreateItem, FindItem, OOF) and client user
agents, the payload of the S2S calls.
"""

from __future__ import annotations

from .encoding import b64, prng

EWS_UA = "ExchangeServicesClient/15.00.0913.015"
OUTLOOK_UA = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)"
NS_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NS_M = "http://schemas.microsoft.com/exchange/services/2006/messages"
NS_T = "http://schemas.microsoft.com/exchange/services/2006/types"


def soap_request(operation: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:m="{NS_M}" '
        f'xmlns:t="{NS_T}" xmlns:soap="{NS_SOAP}"><soap:Header>'
        '<t:RequestServerVersion Version="Exchange2013" /></soap:Header>'
        f"<soap:Body>{operation}</soap:Body></soap:Envelope>"
    ).encode()


def soap_response(body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{NS_SOAP}"><s:Header><h:ServerVersionInfo MajorVersion="15" '
        'MinorVersion="2" MajorBuildNumber="1544" MinorBuildNumber="4" Version="V2017_07_11" '
        f'xmlns:h="{NS_T}" xmlns="{NS_T}" xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/></s:Header>'
        '<s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xmlns:xsd="http://www.w3.org/2001/XMLSchema">{body}</s:Body></s:Envelope>'
    ).encode()


def get_folder(smtp: str, folder: str = "conversationhistory") -> bytes:
    return soap_request(
        "<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape>"
        f'<m:FolderIds><t:DistinguishedFolderId Id="{folder}"><t:Mailbox>'
        f"<t:EmailAddress>{smtp}</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId>"
        "</m:FolderIds></m:GetFolder>"
    )


def get_folder_response(label: str) -> bytes:
    folder_id = b64(prng("folder/" + label, 70))
    change_key = b64(prng("ck/" + label, 19))
    return soap_response(
        f'<m:GetFolderResponse xmlns:m="{NS_M}" xmlns:t="{NS_T}"><m:ResponseMessages>'
        '<m:GetFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
        f'</m:ResponseCode><m:Folders><t:Folder><t:FolderId Id="{folder_id}" '
        f'ChangeKey="{change_key}"/></t:Folder></m:Folders></m:GetFolderResponseMessage>'
        "</m:ResponseMessages></m:GetFolderResponse>"
    )


def create_item(smtp: str, peer: str) -> bytes:
    return soap_request(
        '<m:CreateItem MessageDisposition="SaveOnly"><m:SavedItemFolderId>'
        '<t:DistinguishedFolderId Id="conversationhistory"><t:Mailbox>'
        f"<t:EmailAddress>{smtp}</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId>"
        "</m:SavedItemFolderId><m:Items><t:Message><t:ItemClass>IPM.Note.Microsoft.Conversation"
        f"</t:ItemClass><t:Subject>Conversation with {peer}</t:Subject>"
        '<t:Body BodyType="HTML">&lt;div&gt;[09:00] Bob: can you join the 9:30 review?&lt;/div&gt;'
        "&lt;div&gt;[09:01] Alice: yes, on my way&lt;/div&gt;</t:Body>"
        f"<t:From><t:Mailbox><t:EmailAddress>{smtp}</t:EmailAddress></t:Mailbox></t:From>"
        "<t:IsRead>true</t:IsRead></t:Message></m:Items></m:CreateItem>"
    )


def create_item_response(label: str) -> bytes:
    item_id = b64(prng("item/" + label, 106))
    change_key = b64(prng("ick/" + label, 19))
    return soap_response(
        f'<m:CreateItemResponse xmlns:m="{NS_M}" xmlns:t="{NS_T}"><m:ResponseMessages>'
        '<m:CreateItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
        f'</m:ResponseCode><m:Items><t:Message><t:ItemId Id="{item_id}" ChangeKey="{change_key}"/>'
        "</t:Message></m:Items></m:CreateItemResponseMessage></m:ResponseMessages>"
        "</m:CreateItemResponse>"
    )


def find_item_inbox() -> bytes:
    return soap_request(
        '<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>'
        '<t:AdditionalProperties><t:FieldURI FieldURI="item:Subject"/></t:AdditionalProperties>'
        '</m:ItemShape><m:IndexedPageItemView MaxEntriesReturned="1" Offset="0" '
        'BasePoint="Beginning"/>'
        '<m:ParentFolderIds><t:DistinguishedFolderId Id="inbox"/></m:ParentFolderIds></m:FindItem>'
    )


def find_item_response() -> bytes:
    item_id = b64(prng("inbox-item", 106))
    return soap_response(
        f'<m:FindItemResponse xmlns:m="{NS_M}" xmlns:t="{NS_T}"><m:ResponseMessages>'
        '<m:FindItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
        '</m:ResponseCode><m:RootFolder IndexedPagingOffset="1" TotalItemsInView="42" '
        f'IncludesLastItemInRange="false"><t:Items><t:Message><t:ItemId Id="{item_id}" '
        'ChangeKey="CQAAABYAAAD"/><t:Subject>Quarterly numbers</t:Subject></t:Message>'
        "</t:Items></m:RootFolder></m:FindItemResponseMessage></m:ResponseMessages>"
        "</m:FindItemResponse>"
    )


def oof_request(smtp: str) -> bytes:
    return soap_request(
        f'<GetUserOofSettingsRequest xmlns="{NS_M}"><Mailbox xmlns="{NS_T}">'
        f"<Address>{smtp}</Address></Mailbox></GetUserOofSettingsRequest>"
    )


def oof_response() -> bytes:
    return soap_response(
        f'<GetUserOofSettingsResponse xmlns="{NS_M}"><ResponseMessage ResponseClass="Success">'
        "<ResponseCode>NoError</ResponseCode></ResponseMessage>"
        f'<OofSettings xmlns="{NS_T}"><OofState>Disabled</OofState>'
        "<ExternalAudience>All</ExternalAudience><Duration><StartTime>2026-03-02T09:00:00"
        "</StartTime><EndTime>2026-03-03T09:00:00</EndTime></Duration><InternalReply>"
        "<Message/></InternalReply><ExternalReply><Message/></ExternalReply></OofSettings>"
        "<AllowExternalOof>All</AllowExternalOof></GetUserOofSettingsResponse>"
    )
