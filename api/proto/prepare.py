#!/usr/bin/env python3
"""Strips etcd's v3.5 protos down to what protoc needs without gogoproto and
googleapis: the gogoproto/google imports, `option (gogoproto.*)` lines, the
`option (google.api.http) = {...};` blocks and inline `[(gogoproto...)]` field
options. Messages, fields, numbers and services are left untouched.

Usage: prepare.py ETCD_CHECKOUT OUT_DIR   (OUT_DIR is api/proto)
"""
import pathlib
import re
import sys

FILES = ["api/etcdserverpb/rpc.proto", "api/mvccpb/kv.proto", "api/authpb/auth.proto"]


def strip(text: str) -> str:
    text = re.sub(r'^import "(gogoproto|google)/[^"]*";\n', "", text, flags=re.M)
    text = re.sub(r"^\s*option \(gogoproto\.[^;]*;\n", "", text, flags=re.M)
    text = re.sub(r"^\s*option \(google\.api\.http\) = \{.*?\};\n", "", text, flags=re.M | re.S)
    text = re.sub(r"\s*\[\(gogoproto[^\]]*\]", "", text)
    return text


def main() -> None:
    src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    for name in FILES:
        target = out / "etcd" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(strip((src / name).read_text()))


if __name__ == "__main__":
    main()
