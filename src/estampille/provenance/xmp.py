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
# PLUS data-mining values. "prohibited" forbids what the C2PA manifest's cawg.training-mining
# assertion forbids: AI training, generative training, inference and data mining, so DMI-PROHIBITED
# (not -AIMLTRAINING, which would still allow mining and inference).
DMI = {
    "prohibited": "http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED",
    "allowed": "http://ns.useplus.org/ldf/vocab/DMI-ALLOWED",
}
XMP_KEY = "XML:com.adobe.xmp"
NAMESPACES = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "photoshop": "http://ns.adobe.com/photoshop/1.0/",
    "xmpRights": "http://ns.adobe.com/xap/1.0/rights/",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "plus": "http://ns.useplus.org/ldf/xmp/1.0/",
    "xmpMM": "http://ns.adobe.com/xap/1.0/mm/",
    "Iptc4xmpCore": "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/",
}
# Prefixes for namespaces other tools write, so a report never shows a raw URI for them.
KNOWN_PREFIXES = {
    **{uri: prefix for prefix, uri in NAMESPACES.items()},
    "http://ns.adobe.com/xap/1.0/": "xmp",
    "http://ns.adobe.com/exif/1.0/": "exif",
    "http://ns.adobe.com/tiff/1.0/": "tiff",
    "http://ns.adobe.com/camera-raw-settings/1.0/": "crs",
    "http://ns.adobe.com/xap/1.0/sType/ResourceEvent#": "stEvt",
    "http://ns.adobe.com/xap/1.0/sType/ResourceRef#": "stRef",
    "http://ns.adobe.com/pdf/1.3/": "pdf",
    "http://ns.adobe.com/photoshop/1.0/": "photoshop",
    "http://c2pa.org/manifest/": "c2pa",
}


@dataclass(frozen=True)
class XmpFields:
    digital_source_type: str
    ai_system: str
    ai_system_version: str
    ai_prompt: str | None  # None when the brand does not disclose prompts
    creator: str
    credit_line: str
    copyright_notice: str
    web_statement: str
    licensor_name: str
    licensor_url: str
    data_mining: str  # "prohibited" or "allowed"
    instance_id: str | None = None  # xmp:iid:..., the same as the C2PA manifest's instance_id
    document_id: str | None = None  # xmp.did:..., one per image id, kept by every later version
    alt_text: str | None = None  # the published alt text (written at export)


def xmp_packet(f: XmpFields) -> str:
    q = lambda v: escape(v, {'"': "&quot;"})  # noqa: E731 - attribute escaping, local use
    prompt = f'\n Iptc4xmpExt:AIPromptInformation="{q(f.ai_prompt)}"' if f.ai_prompt else ""
    ids = "".join(
        f'\n xmpMM:{name}="{q(value)}"'
        for name, value in (("InstanceID", f.instance_id), ("DocumentID", f.document_id))
        if value
    )
    alt = (
        (
            f'\n<Iptc4xmpCore:AltTextAccessibility><rdf:Alt><rdf:li xml:lang="x-default">{escape(f.alt_text)}'
            "</rdf:li></rdf:Alt></Iptc4xmpCore:AltTextAccessibility>"
        )
        if f.alt_text
        else ""
    )
    ns = " ".join(f'xmlns:{k}="{v}"' for k, v in NAMESPACES.items() if k not in ("x", "rdf"))
    return f'''<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{NAMESPACES["rdf"]}">
<rdf:Description rdf:about="" {ns}
 Iptc4xmpExt:DigitalSourceType="{q(f.digital_source_type)}"
 Iptc4xmpExt:AISystemUsed="{q(f.ai_system)}" Iptc4xmpExt:AISystemVersionUsed="{q(f.ai_system_version)}"{prompt}{ids}
 photoshop:Credit="{q(f.credit_line)}" xmpRights:WebStatement="{q(f.web_statement)}" xmpRights:Marked="True"
 plus:DataMining="{DMI[f.data_mining]}">
<dc:creator><rdf:Seq><rdf:li>{escape(f.creator)}</rdf:li></rdf:Seq></dc:creator>
<dc:rights><rdf:Alt><rdf:li xml:lang="x-default">{escape(f.copyright_notice)}</rdf:li></rdf:Alt></dc:rights>
<plus:Licensor><rdf:Seq><rdf:li rdf:parseType="Resource"><plus:LicensorName>{escape(f.licensor_name)}</plus:LicensorName>
<plus:LicensorURL>{escape(f.licensor_url)}</plus:LicensorURL></rdf:li></rdf:Seq></plus:Licensor>{alt}
</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'''


def png_with_xmp(image: Image.Image, packet: str) -> bytes:
    """The image as PNG bytes with the XMP packet in an iTXt chunk (the Adobe convention)."""
    info = PngImagePlugin.PngInfo()
    info.add_itxt(XMP_KEY, packet)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def xmp_packet_of(data: bytes) -> str | None:
    """The raw XMP packet of a PNG, JPEG, WebP or TIFF file, or None."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            packet = image.info.get(XMP_KEY) or image.info.get("xmp")
    except Exception:
        return None
    if not packet:
        return None
    return packet.decode("utf-8", "replace") if isinstance(packet, bytes) else packet


def read_xmp(data: bytes) -> dict[str, str]:
    """The fields of an image's XMP as 'prefix:Name' -> value; {} when there is none. Prefixes are
    the usual ones for known namespaces and the packet's own for the others."""
    packet = xmp_packet_of(data)
    if not packet:
        return {}
    try:
        body = packet[packet.index("<x:xmpmeta") : packet.rindex("</x:xmpmeta>") + 12]
        declared: dict[str, str] = {}  # namespace URI -> the prefix the file declares for it
        for _, (prefix, uri) in ET.iterparse(io.StringIO(body), events=("start-ns",)):
            declared.setdefault(uri, prefix)
        root = ET.fromstring(body)
    except (ValueError, ET.ParseError):
        return {"_error": "unreadable XMP packet"}
    prefix_of = {**declared, **KNOWN_PREFIXES}
    fields: dict[str, str] = {}

    def short(tag: str) -> str:
        uri, _, name = tag[1:].partition("}")
        return f"{prefix_of.get(uri) or uri}:{name}"

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
