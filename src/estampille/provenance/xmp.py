"""IPTC Photo Metadata (2025.1) and PLUS fields as one XMP packet, embedded in PNG.

Written before signing: the C2PA hard binding then covers it, so an edit to the XMP after
signing shows up as a validation failure.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import escape

from PIL import Image, PngImagePlugin

TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
COMPOSITE_TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
DMI = {"prohibited": "http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED-AIMLTRAINING",
       "allowed": "http://ns.useplus.org/ldf/vocab/DMI-ALLOWED"}
XMP_KEY = "XML:com.adobe.xmp"
NAMESPACES = {
    "x": "adobe:ns:meta/", "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/", "photoshop": "http://ns.adobe.com/photoshop/1.0/",
    "xmpRights": "http://ns.adobe.com/xap/1.0/rights/", "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "plus": "http://ns.useplus.org/ldf/xmp/1.0/",
}


@dataclass(frozen=True)
class XmpFields:
    digital_source_type: str
    ai_system: str
    ai_system_version: str
    ai_prompt: str | None      # None when the brand does not disclose prompts
    creator: str
    credit_line: str
    copyright_notice: str
    web_statement: str
    licensor_name: str
    licensor_url: str
    data_mining: str           # "prohibited" or "allowed"


def xmp_packet(f: XmpFields) -> str:
    q = lambda v: escape(v, {'"': "&quot;"})   # noqa: E731 - attribute escaping, local use
    prompt = f'\n Iptc4xmpExt:AIPromptInformation="{q(f.ai_prompt)}"' if f.ai_prompt else ""
    ns = " ".join(f'xmlns:{k}="{v}"' for k, v in NAMESPACES.items() if k not in ("x", "rdf"))
    return f'''<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{NAMESPACES['rdf']}">
<rdf:Description rdf:about="" {ns}
 Iptc4xmpExt:DigitalSourceType="{q(f.digital_source_type)}"
 Iptc4xmpExt:AISystemUsed="{q(f.ai_system)}" Iptc4xmpExt:AISystemVersionUsed="{q(f.ai_system_version)}"{prompt}
 photoshop:Credit="{q(f.credit_line)}" xmpRights:WebStatement="{q(f.web_statement)}" xmpRights:Marked="True"
 plus:DataMining="{DMI[f.data_mining]}">
<dc:creator><rdf:Seq><rdf:li>{escape(f.creator)}</rdf:li></rdf:Seq></dc:creator>
<dc:rights><rdf:Alt><rdf:li xml:lang="x-default">{escape(f.copyright_notice)}</rdf:li></rdf:Alt></dc:rights>
<plus:Licensor><rdf:Seq><rdf:li rdf:parseType="Resource"><plus:LicensorName>{escape(f.licensor_name)}</plus:LicensorName>
<plus:LicensorURL>{escape(f.licensor_url)}</plus:LicensorURL></rdf:li></rdf:Seq></plus:Licensor>
</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'''


def png_with_xmp(image: Image.Image, packet: str) -> bytes:
    """The image as PNG bytes with the XMP packet in an iTXt chunk (the Adobe convention)."""
    info = PngImagePlugin.PngInfo()
    info.add_itxt(XMP_KEY, packet)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def read_xmp(data: bytes) -> dict[str, str]:
    """The IPTC/PLUS fields of an image's XMP as 'prefix:Name' -> value; {} when there is none."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            packet = image.info.get(XMP_KEY) or image.info.get("xmp")
    except Exception:
        return {}
    if not packet:
        return {}
    if isinstance(packet, bytes):
        packet = packet.decode("utf-8", "replace")
    try:
        root = ET.fromstring(packet[packet.index("<x:xmpmeta"): packet.rindex("</x:xmpmeta>") + 12])
    except (ValueError, ET.ParseError):
        return {"_error": "unreadable XMP packet"}
    prefix_of = {uri: prefix for prefix, uri in NAMESPACES.items()}
    fields: dict[str, str] = {}

    def short(tag: str) -> str:
        uri, _, name = tag[1:].partition("}")
        return f"{prefix_of.get(uri, uri)}:{name}"

    for description in root.iter(f"{{{NAMESPACES['rdf']}}}Description"):
        for attribute, value in description.attrib.items():
            if attribute.startswith("{"):
                fields[short(attribute)] = value
        for child in description:
            texts = [t.strip() for t in child.itertext() if t.strip()]
            if texts:
                fields[short(child.tag)] = " | ".join(texts)
    fields.pop("rdf:about", None)
    return fields
