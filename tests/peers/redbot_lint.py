"""Runs REDbot's checks on one URL, with optional request headers, and prints its notes as one
JSON list: [{"id", "level", "summary"}], level being GOOD, INFO, WARN or BAD.

Usage: redbot_lint.py URL [METHOD] [NAME: VALUE ...]

The command-line `redbot` cannot send request headers; this asks the same checker through its
library, as its command line does, so that the JSON variant of a negotiated resource is linted
too.
"""

import json
import sys
from configparser import ConfigParser

import thor
from redbot.resource import HttpResource


def main() -> None:
    url = sys.argv[1]
    rest = sys.argv[2:]
    method = "GET"
    if rest and ":" not in rest[0]:
        method, rest = rest[0], rest[1:]
    headers = [tuple(part.strip() for part in h.split(":", 1)) for h in rest]
    config = ConfigParser()
    config.read_dict({"redbot": {"enable_local_access": "True"}})
    resource = HttpResource(config["redbot"])
    resource.set_request(url, method=method, headers=headers)

    @thor.events.on(resource)
    def check_done() -> None:
        thor.stop()

    resource.check()
    thor.run()
    notes = []

    def collect(note) -> None:
        notes.append({"id": note.__class__.__name__, "level": note.level.name, "summary": note.summary})
        for sub in note.subnotes:
            collect(sub)

    for note in resource.response.notes:
        collect(note)
    json.dump({"status": resource.response.status_code, "notes": notes}, sys.stdout)


if __name__ == "__main__":
    main()
