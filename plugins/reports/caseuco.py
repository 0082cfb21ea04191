"""CASE/UCO JSON-LD: the case as a CASE 1.5 / UCO 1.5 knowledge graph.

What the graph holds (https://caseontology.org/):

- one ``case-investigation:Investigation`` (name = case number, description =
  title); the agency as an ``uco-identity:Organization`` related to it by a
  ``uco-core:Relationship`` of kind ``Conducted_By``;
- per evidence item an ``uco-observable:Image`` (the media: ``ImageFacet`` with
  the container, ``ContentDataFacet`` with the media size and hashes), its image
  files as ``uco-observable:File`` (``Contained_Within`` relationships), and a
  ``case-investigation:ProvenanceRecord`` (exhibit number = evidence id) over
  both, with the verification result;
- per run a ``case-investigation:InvestigativeAction``: performer (the examiner
  as ``uco-identity:Person`` with the ``case-investigation:Examiner`` role, or
  the operating-system account when no examiner was named), instruments
  (``uco-tool:Tool`` for examkit, The Sleuth Kit, pytsk3, libewf and libmagic at
  the recorded versions), object (the evidence images), result (every file the
  run hashed), start and end time, status, and the run it resumed
  (``wasInformedBy``);
- per ``files`` row an ``uco-observable:File`` with a ``FileFacet`` (name, path,
  size, times, allocation state, directory or not) and, when hashed, a
  ``ContentDataFacet`` (bytes hashed, MIME type, ``uco-types:Hash`` per
  digest), ``wasDerivedFrom`` its evidence image; flagged and known-good files
  carry the tags ``flagged`` / ``known-good``. Names and paths of flagged files
  are withheld through the display gate; their hashes are kept.

Identifiers are UUIDv5, so the same case always gives the same graph: objects
from a namespace derived from the case number and creation time; facets and
hashes by the inherence scheme of ``case_utils.inherent_uuid`` (a facet from its
object's UUID and its class IRI; a hash from ``urn:hash::ALGO:HEX``), so other
CASE tools compute the same IRIs. ``hashMethod`` is a plain string: UCO 1.4
made ``xsd:string`` its datatype (a ``HashNameVocab``-typed literal is a SHACL
warning since then). The ``@graph`` is written node by node.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Any

from examkit.hookspecs import Register, hookimpl
from examkit.reporting import ReportData, ReportFormat

CASE_VERSION = "1.5.0"  # the CASE release the output is written for (case_validate's default)
KB = "urn:examkit:kb:"
CONTEXT = {
    "case-investigation": "https://ontology.caseontology.org/case/investigation/",
    "kb": KB,
    "uco-action": "https://ontology.unifiedcyberontology.org/uco/action/",
    "uco-core": "https://ontology.unifiedcyberontology.org/uco/core/",
    "uco-identity": "https://ontology.unifiedcyberontology.org/uco/identity/",
    "uco-observable": "https://ontology.unifiedcyberontology.org/uco/observable/",
    "uco-tool": "https://ontology.unifiedcyberontology.org/uco/tool/",
    "uco-types": "https://ontology.unifiedcyberontology.org/uco/types/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}
_OBSERVABLE = CONTEXT["uco-observable"]
# Fixed namespace of examkit's CASE identifiers (tools are the same in every case).
_NAMESPACE = uuid.UUID("42d309a5-ffca-4773-bd0b-ca2c43512613")

# examkit / hasher-plugin digest names -> UCO HashNameVocab
_HASH_NAMES = {
    "md5": "MD5", "sha1": "SHA1", "sha224": "SHA224", "sha256": "SHA256", "sha384": "SHA384",
    "sha512": "SHA512", "sha3-224": "SHA3-224", "sha3-256": "SHA3-256",
    "sha3-384": "SHA3-384", "sha3-512": "SHA3-512",
}  # fmt: skip
# tool_versions keys -> tool names shown as instruments of a run
_TOOLS = (
    ("sleuthkit", "The Sleuth Kit"),
    ("pytsk3", "pytsk3"),
    ("libewf", "libewf"),
    ("libmagic", "libmagic"),
)
_ACTION_STATUS = {
    "complete": "Complete/Finish",
    "running": "Ongoing",
    "interrupted": "Fail",
    "failed": "Error",
}
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")
_XSD_DATETIME = re.compile(r"-?\d{4,}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?")
_DIRECTORY_TYPES = frozenset({"dir", "virtual_dir"})

Node = dict[str, Any]
_URL_NAMESPACE = uuid.NAMESPACE_URL.bytes


def _uuid5(namespace: bytes, name: str) -> str:
    """``str(uuid.uuid5(UUID(bytes=namespace), name))``, several times faster."""
    digest = bytearray(
        hashlib.sha1(namespace + name.encode("utf-8", "surrogatepass")).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def _ref(iri: str) -> Node:
    return {"@id": iri}


def _typed(value: Any, datatype: str) -> Node:
    return {"@type": datatype, "@value": value}


def _datetime(value: Any) -> Node | None:
    """An ``xsd:dateTime`` literal, or None when the value is not a valid one."""
    if not isinstance(value, str) or not _XSD_DATETIME.fullmatch(value):
        return None
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return None
    return _typed(value, "xsd:dateTime")


def _integer(value: Any) -> Node | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return _typed(value, "xsd:integer")


def _hash(algorithm: str, value: Any) -> Node | None:
    """A ``uco-types:Hash`` with the inherent IRI of case_utils.inherent_uuid."""
    method = _HASH_NAMES.get(algorithm.lower().replace("_", "-"))
    if method is None or not isinstance(value, str) or not _HEX.fullmatch(value):
        return None
    hexvalue = value.lower()
    name = f"urn:hash::{method.lower()}:{hexvalue}"
    return {
        "@id": f"kb:Hash-{_uuid5(_URL_NAMESPACE, name)}",
        "@type": "uco-types:Hash",
        "uco-types:hashMethod": method,
        "uco-types:hashValue": _typed(hexvalue, "xsd:hexBinary"),
    }


def _hashes(pairs: Iterable[tuple[str, Any]]) -> list[Node]:
    return [h for h in (_hash(alg, value) for alg, value in pairs) if h is not None]


def _facet(owner: str, facet_class: str, properties: Node) -> Node:
    """An observable facet whose IRI is inherent to its owner (case_utils.inherent_uuid)."""
    owner_uuid = bytes.fromhex(owner[-36:].replace("-", ""))
    facet_uuid = _uuid5(owner_uuid, _OBSERVABLE + facet_class)
    return {
        "@id": f"kb:{facet_class}-{facet_uuid}",
        "@type": f"uco-observable:{facet_class}",
        **properties,
    }


def _compact(node: Node) -> Node:
    """Drop properties without a value (None, empty string or list)."""
    return {k: v for k, v in node.items() if v is not None and v != "" and v != []}


class _Ids:
    """Deterministic IRIs: ``kb:KIND-UUIDv5`` under the case's namespace."""

    def __init__(self, info: dict[str, Any]) -> None:
        key = json.dumps([info.get("case_number"), info.get("created_utc")])
        self.case = uuid.uuid5(_NAMESPACE, key).bytes

    def __call__(self, kind: str, *key: Any, shared: bool = False) -> str:
        name = "\x1f".join([kind, *(str(k) for k in key)])
        return f"kb:{kind}-{_uuid5(_NAMESPACE.bytes if shared else self.case, name)}"


class _GraphWriter:
    """Writes ``{"@context": …, "@graph": [node, node, …]}`` one node at a time."""

    def __init__(self, out: IO[bytes]) -> None:
        self.text = io.TextIOWrapper(out, encoding="utf-8", newline="\n")
        self.count = 0
        self.text.write('{\n"@context": ')
        self.text.write(json.dumps(CONTEXT, indent=1, sort_keys=True))
        self.text.write(',\n"@graph": [')

    @staticmethod
    def _dumps(node: Node) -> str:
        return json.dumps(_compact(node), ensure_ascii=False, sort_keys=True)

    def _next(self) -> None:
        self.text.write(",\n" if self.count else "\n")
        self.count += 1

    def node(self, node: Node) -> None:
        self._next()
        self.text.write(self._dumps(node))

    def node_with_refs(self, node: Node, key: str, iris: Iterable[str]) -> None:
        """A node plus one property whose (possibly huge) list of IRIs is streamed."""
        self._next()
        head = self._dumps(node)
        refs = iter(iris)
        first = next(refs, None)
        if first is None:
            self.text.write(head)
            return
        self.text.write(f"{head[:-1]}, {json.dumps(key)}: [{json.dumps(_ref(first))}")
        for iri in refs:
            self.text.write(", " + json.dumps(_ref(iri)))
        self.text.write("]}")

    def close(self) -> None:
        self.text.write("\n]\n}\n")
        self.text.flush()
        self.text.detach()


class _Spool:
    """File IRIs per run, kept on disk past 1 MiB (a case can hold millions of files)."""

    def __init__(self) -> None:
        self.files: dict[int, tempfile.SpooledTemporaryFile[str]] = {}
        self.stack = contextlib.ExitStack()

    def add(self, run_id: int, iri: str) -> None:
        spool = self.files.get(run_id)
        if spool is None:
            spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (closed by the ExitStack)
                max_size=1 << 20, mode="w+", encoding="utf-8", newline="\n"
            )
            self.files[run_id] = self.stack.enter_context(spool)
        spool.write(iri + "\n")

    def read(self, run_id: int) -> Iterator[str]:
        spool = self.files.get(run_id)
        if spool is None:
            return
        spool.seek(0)
        for line in spool:
            yield line.rstrip("\n")

    def close(self) -> None:
        self.stack.close()


class CaseUcoReport(ReportFormat):
    name = "case-uco"
    description = (
        f"CASE/UCO JSON-LD (CASE {CASE_VERSION}): investigation, provenance, actions,"
        " files with hashes (flagged names withheld)"
    )
    version = "1"
    extension = ".jsonld"

    def write(self, data: ReportData, out: IO[bytes]) -> None:
        _Builder(data, _GraphWriter(out)).write()


class _Builder:
    def __init__(self, data: ReportData, graph: _GraphWriter) -> None:
        self.data = data
        self.graph = graph
        self.ids = _Ids(data.info)
        self.emitted: set[str] = set()

    def text(self, value: Any) -> str | None:
        if value is None or value == "":
            return None
        return self.data.gate.text(str(value))

    def emit(self, node: Node) -> None:
        """Write a context node once (persons, tools and roles are shared by runs)."""
        if node["@id"] not in self.emitted:
            self.emitted.add(node["@id"])
            self.graph.node(node)

    def image_iri(self, evidence_id: str) -> str:
        return self.ids("image", evidence_id)

    def write(self) -> None:
        data = self.data
        records = [self.ids("provenance-record", ev["evidence_id"]) for ev in data.evidence]
        actions = [self.ids("investigative-action", run["run_id"]) for run in data.runs]
        self.investigation(records, actions)
        for evidence in data.evidence:
            self.evidence(evidence)
        spool = _Spool()
        try:
            for row in data.files():
                iri = self.file(row)
                if row.get("run_id") is not None:
                    spool.add(int(row["run_id"]), iri)
            for run, iri in zip(data.runs, actions, strict=True):
                self.action(run, iri, spool.read(int(run["run_id"])))
        finally:
            spool.close()
        self.graph.close()

    # -- the investigation, its agency and examiner -------------------------------------------

    def investigation(self, records: list[str], actions: list[str]) -> None:
        info = self.data.info
        iri = self.ids("investigation")
        objects = [*records, *actions]
        agency = self.text(info.get("agency"))
        if agency:
            org = self.ids("organization", agency)
            self.emit({"@id": org, "@type": "uco-identity:Organization", "uco-core:name": agency})
            rel = self.relationship(iri, org, "Conducted_By")
            objects += [org, rel]
        examiner = self.text(info.get("examiner"))
        if examiner:
            objects += [self.person(examiner)]
        self.graph.node(
            {
                "@id": iri,
                "@type": "case-investigation:Investigation",
                "uco-core:name": self.text(info.get("case_number")),
                "uco-core:description": self.text(info.get("title")),
                "case-investigation:investigationForm": "case",
                "uco-core:objectCreatedTime": _datetime(info.get("created_utc")),
                "uco-core:object": [_ref(o) for o in objects],
            }
        )

    def relationship(self, source: str, target: str, kind: str, observable: bool = False) -> str:
        iri = self.ids("relationship", source, target, kind)
        self.emit(
            {
                "@id": iri,
                "@type": "uco-observable:ObservableRelationship"
                if observable
                else "uco-core:Relationship",
                "uco-core:source": _ref(source),
                "uco-core:target": _ref(target),
                "uco-core:kindOfRelationship": kind,
                "uco-core:isDirectional": True,
            }
        )
        return iri

    def person(self, name: str) -> str:
        iri = self.ids("person", name)
        if iri not in self.emitted:
            self.emit({"@id": iri, "@type": "uco-identity:Person", "uco-core:name": name})
            role = self.ids("examiner-role")
            self.emit({"@id": role, "@type": "case-investigation:Examiner",
                       "uco-core:name": "examiner"})  # fmt: skip
            self.relationship(iri, role, "Has_Role")
        return iri

    def performer(self, run: dict[str, Any]) -> str | None:
        examiner = self.text(run.get("examiner"))
        if examiner:
            return self.person(examiner)
        user = self.text(run.get("os_user"))
        if not user:
            return None
        account = f"{user}@{self.text(run.get('host')) or 'unknown-host'}"
        iri = self.ids("identity", account)
        self.emit(
            {
                "@id": iri,
                "@type": "uco-identity:Identity",
                "uco-core:name": account,
                "uco-core:description": "operating-system account that ran examkit"
                " (no examiner was named)",
            }
        )
        return iri

    def tools(self, run: dict[str, Any]) -> list[str]:
        found = [("examkit", run.get("examkit_version"))]
        versions = run.get("tool_versions")
        if isinstance(versions, dict):
            found += [(label, versions.get(key)) for key, label in _TOOLS]
        iris = []
        for label, version in found:
            if not version:
                continue
            iri = self.ids("tool", label, version, shared=True)
            self.emit({"@id": iri, "@type": "uco-tool:Tool", "uco-core:name": label,
                       "uco-tool:version": str(version)})  # fmt: skip
            iris.append(iri)
        return iris

    # -- evidence ---------------------------------------------------------------------------

    def media_hashes(self, evidence: dict[str, Any]) -> list[Node]:
        return _hashes((alg, evidence.get(f"media_{alg}")) for alg in ("md5", "sha1", "sha256"))

    def evidence(self, evidence: dict[str, Any]) -> None:
        evidence_id = evidence["evidence_id"]
        image = self.image_iri(evidence_id)
        hashes = self.media_hashes(evidence)
        media: Node = _compact(
            {"uco-observable:sizeInBytes": _integer(evidence.get("media_size")),
             "uco-observable:hash": hashes}
        )  # fmt: skip
        facets = [
            _facet(image, "ImageFacet", {"uco-observable:imageType": evidence.get("container")})
        ]
        if media:
            facets.append(_facet(image, "ContentDataFacet", media))
        self.graph.node(
            {
                "@id": image,
                "@type": "uco-observable:Image",
                "uco-core:name": self.text(evidence_id),
                "uco-core:description": self.text(evidence.get("description")),
                "uco-core:hasFacet": [_compact(f) for f in facets],
            }
        )
        objects = [image]
        sources = evidence.get("source_paths")
        paths = [str(p) for p in sources] if isinstance(sources, list) else []
        for index, path in enumerate(paths):
            iri = self.ids("image-file", evidence_id, index)
            name = path.replace("\\", "/").rpartition("/")[2]
            file_facets = [
                _facet(iri, "FileFacet",
                       {"uco-observable:fileName": self.text(name),
                        "uco-observable:filePath": self.text(path)})
            ]  # fmt: skip
            if evidence.get("container") == "raw" and len(paths) == 1 and media:
                # a raw image file is the media stream itself
                file_facets.append(_facet(iri, "ContentDataFacet", media))
            self.graph.node(
                {"@id": iri, "@type": "uco-observable:File",
                 "uco-core:hasFacet": [_compact(f) for f in file_facets]}
            )  # fmt: skip
            objects += [iri, self.relationship(image, iri, "Contained_Within", observable=True)]
        self.graph.node(
            {
                "@id": self.ids("provenance-record", evidence_id),
                "@type": "case-investigation:ProvenanceRecord",
                "case-investigation:exhibitNumber": self.text(evidence_id),
                "uco-core:description": self.provenance_text(evidence, len(paths)),
                "uco-core:object": [_ref(o) for o in objects],
            }
        )

    def provenance_text(self, evidence: dict[str, Any], segments: int) -> str | None:
        parts = [
            f"evidence {evidence['evidence_id']}: {evidence.get('container')} image,"
            f" {segments} file(s)"
        ]
        acquisition = [
            f"{alg} {evidence[f'acquisition_{alg}']}"
            for alg in ("md5", "sha1", "sha256")
            if evidence.get(f"acquisition_{alg}")
        ]
        if acquisition:
            source = evidence.get("acquisition_source") or "unknown source"
            parts.append(f"acquisition hashes ({source}): {', '.join(acquisition)}")
        verification = evidence.get("verification")
        if verification:
            detail = evidence.get("verification_detail")
            when = evidence.get("verified_utc")
            parts.append(
                f"verification: {verification}"
                + (f" ({detail})" if detail else "")
                + (f" at {when}" if when else "")
            )
        return self.text("; ".join(parts))

    # -- files ------------------------------------------------------------------------------

    def file(self, row: dict[str, Any]) -> str:
        gate = self.data.gate
        flagged = bool(row.get("flagged"))
        iri = self.ids("file", row["file_id"])
        file_facet: Node = {
            "uco-observable:fileName": gate.name(row.get("name"), flagged),
            "uco-observable:filePath": gate.path(row.get("path"), flagged),
            "uco-observable:sizeInBytes": _integer(row.get("size")),
            "uco-observable:isDirectory": row.get("meta_type") in _DIRECTORY_TYPES,
            "uco-observable:allocationStatus": row.get("state"),
            "uco-observable:modifiedTime": _datetime(row.get("mtime")),
            "uco-observable:accessedTime": _datetime(row.get("atime")),
            "uco-observable:metadataChangeTime": _datetime(row.get("ctime")),
            "uco-observable:observableCreatedTime": _datetime(row.get("crtime")),
        }
        facets = [_compact(_facet(iri, "FileFacet", file_facet))]
        digests = [(alg, row.get(alg)) for alg in ("md5", "sha1", "sha256")]
        extra = row.get("digests")
        if isinstance(extra, dict):
            digests += sorted((str(k), v) for k, v in extra.items() if k not in _HASH_NAMES)
        hashes = _hashes(digests)
        if hashes:
            content: Node = {
                "uco-observable:sizeInBytes": _integer(row.get("bytes_read")),
                "uco-observable:mimeType": self.text(row.get("mime")),
                "uco-observable:hash": hashes,
            }
            facets.append(_compact(_facet(iri, "ContentDataFacet", content)))
        tags = []
        if flagged:
            tags.append("flagged")
        if row.get("known_good"):
            tags.append("known-good")
        self.graph.node(
            {
                "@id": iri,
                "@type": "uco-observable:File",
                "uco-core:tag": tags,
                "case-investigation:wasDerivedFrom": _ref(self.image_iri(row["evidence_id"])),
                "uco-core:hasFacet": facets,
            }
        )
        if row.get("parent_file_id") is not None:  # an archive member: inside its archive
            self.relationship(iri, self.ids("file", row["parent_file_id"]), "Contained_Within",
                              observable=True)  # fmt: skip
        return iri

    # -- runs -------------------------------------------------------------------------------

    def action(self, run: dict[str, Any], iri: str, results: Iterator[str]) -> None:
        run_id = run["run_id"]
        evidence_ids = run.get("evidence_ids")
        objects = (
            [self.image_iri(e) for e in evidence_ids if isinstance(e, str)]
            if isinstance(evidence_ids, list)
            else []
        )
        resumed = run.get("resumed_run_id")
        informed = self.ids("investigative-action", resumed) if resumed else None
        performer = self.performer(run)
        instruments = self.tools(run)
        node: Node = {
            "@id": iri,
            "@type": "case-investigation:InvestigativeAction",
            "uco-core:name": f"examkit {run.get('command')} (run {run_id})",
            "uco-core:description": self.run_text(run),
            "uco-action:actionStatus": _ACTION_STATUS.get(str(run.get("status")), "Unknown"),
            "uco-action:startTime": _datetime(run.get("started_utc")),
            "uco-action:endTime": _datetime(run.get("finished_utc")),
            "uco-action:performer": _ref(performer) if performer else None,
            "uco-action:instrument": [_ref(t) for t in instruments],
            "uco-action:object": [_ref(o) for o in objects],
            "case-investigation:wasInformedBy": _ref(informed) if informed else None,
        }
        self.graph.node_with_refs(node, "uco-action:result", results)

    def run_text(self, run: dict[str, Any]) -> str | None:
        parts = [f"examkit {run.get('command')} run {run['run_id']}: {run.get('status')}"]
        if run.get("error"):
            parts.append(f"error: {run['error']}")
        argv = run.get("command_line")
        if isinstance(argv, list) and argv:
            parts.append("command line: " + " ".join(str(a) for a in argv))
        counts = run.get("counts")
        if counts:
            parts.append("counts: " + json.dumps(counts, sort_keys=True))
        plugins = run.get("plugin_versions")
        if isinstance(plugins, dict) and plugins:
            parts.append("plugins: " + ", ".join(f"{k} {v}" for k, v in sorted(plugins.items())))
        return self.text("; ".join(parts))


@hookimpl
def register_report_formats(register: Register) -> None:
    register(CaseUcoReport())
