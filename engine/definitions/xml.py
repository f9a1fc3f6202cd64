"""Hardened XML parsing for deployed models.

The library would call ``etree.parse`` with lxml's defaults; deployed text comes from other agencies, so every
resource is parsed here instead: no DTD, no entity expansion, no network, no huge trees, a size limit, and the
bytes are decoded by the XML declaration rather than the machine's locale.
"""

from __future__ import annotations

from lxml import etree

from engine.errors import InvalidModel, PayloadTooLarge

DEFAULT_MAX_BYTES = 5 * 1024 * 1024


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


def parse_xml(content: bytes, resource: str, max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """Parse one resource; any DTD or entity declaration is refused outright."""
    if len(content) > max_bytes:
        raise PayloadTooLarge(
            f"{resource}: {len(content)} bytes exceeds the limit of {max_bytes} bytes",
            resource=resource,
            limit=max_bytes,
        )
    if not content.strip():
        raise InvalidModel("the file is empty", resource=resource)
    try:
        root = etree.fromstring(content, parser=_parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno else None
        raise InvalidModel(f"not well-formed XML: {exc.msg}", resource=resource, line=line) from None
    except ValueError as exc:
        raise InvalidModel(f"not well-formed XML: {exc}", resource=resource) from None
    tree = root.getroottree()
    if tree.docinfo.internalDTD is not None or tree.docinfo.doctype:
        raise InvalidModel(
            "DOCTYPE declarations are not allowed (entities and DTDs are refused)",
            resource=resource,
            line=1,
        )
    for node in root.iter():
        if isinstance(node, etree._Entity):
            raise InvalidModel("entity references are not allowed", resource=resource, line=node.sourceline)
    return root
