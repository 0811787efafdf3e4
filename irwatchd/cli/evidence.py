"""`irwatchd evidence list|verify`: the forensic copies and a fresh check of their hashes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from irwatchd.errors import EX_DATAERR, EX_OK
from irwatchd.jsonfiles import DamagedStateError, read_json_object
from irwatchd.response.forensics import verify_all
from irwatchd.response.responder import add_state_options, state_paths_for


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `evidence list` and `evidence verify`."""
    parser = subparsers.add_parser("evidence", help="list or verify forensic copies")
    actions = parser.add_subparsers(dest="evidence_command", metavar="ACTION", required=True)

    verify = actions.add_parser(
        "verify",
        help="hash every copied file again; exit 0 when all match, 65 naming a modified file",
    )
    verify.add_argument(
        "folder",
        nargs="?",
        help="one evidence folder or a forensics folder "
        "(default: the state directory's forensics/)",
    )
    add_state_options(verify)
    verify.set_defaults(handler=run_verify)

    listing = actions.add_parser(
        "list", help="list the evidence folders with their incident and files"
    )
    listing.add_argument("--json", action="store_true", help="print the manifests as JSON lines")
    add_state_options(listing)
    listing.set_defaults(handler=run_list)


def _folder(args: argparse.Namespace) -> Path:
    if getattr(args, "folder", None):
        return Path(args.folder)
    return state_paths_for(args.config, args.state_dir).forensics


def run_verify(args: argparse.Namespace) -> int:
    """Verify every manifest and print how many files matched."""
    manifests, files = verify_all(_folder(args))
    print(f"evidence intact: {files} file(s) in {manifests} manifest(s) match their SHA-256")
    return EX_OK


def run_list(args: argparse.Namespace) -> int:
    """Print one line (or JSON object) per evidence folder."""
    damaged = 0
    for manifest_path in sorted(_folder(args).glob("*/manifest.json")):
        try:
            manifest = read_json_object(manifest_path, {})
        except DamagedStateError as error:
            print(f"irwatchd evidence list: {error}", file=sys.stderr)
            damaged += 1
            continue
        if args.json:
            print(json.dumps(manifest | {"path": str(manifest_path.parent)}, ensure_ascii=False))
            continue
        files = manifest.get("files")
        entries = files if isinstance(files, list) else []
        names = ", ".join(str(entry.get("name")) for entry in entries if isinstance(entry, dict))
        print(
            f"{manifest.get('copied_at')}  {manifest.get('incident_id')}  "
            f"{manifest_path.parent}  [{names}]"
        )
    return EX_DATAERR if damaged else EX_OK
