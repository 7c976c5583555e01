"""Generates authd's protobuf and gRPC stubs from ../../proto into
src/authd/_gen (or into the directory given as the first argument), with
their imports rewritten so that they live inside the ``authd`` package.

Run with grpcio-tools and mypy-protobuf installed (see requirements-dev.txt):

    python scripts/generate.py            # regenerate the committed stubs
    python scripts/generate.py --check    # fail when they are not current
"""

from __future__ import annotations

import filecmp
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
PROTO = HERE.parent.parent / "proto"
TARGET = HERE / "src" / "authd" / "_gen"
FILES = ["auth/v1/auth.proto"]
HEADER = "# Generated from proto/ by clients/python/scripts/generate.py. Do not edit.\n"


def generate(out: Path) -> None:
    well_known = str(resources.files("grpc_tools") / "_proto")
    # mypy-protobuf's plugins sit beside this interpreter (a venv's bin/).
    bindir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as raw:
        command = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO}",
            f"-I{well_known}",
            f"--python_out={raw}",
            f"--grpc_python_out={raw}",
            f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
            f"--mypy_out={raw}",
            f"--mypy_grpc_out={raw}",
            *FILES,
        ]
        subprocess.run(command, check=True)
        for path in sorted(Path(raw).rglob("*.py*")):
            text = path.read_text()
            # `from auth.v1 import auth_pb2` -> `from authd._gen.auth.v1 import auth_pb2`
            text = re.sub(r"^(from|import) auth\.v1\b", r"\1 authd._gen.auth.v1", text, flags=re.M)
            text = (
                re.sub(r"\bauth\.v1\.auth_pb2\b(?=\.)", "authd._gen.auth.v1.auth_pb2", text)
                if path.suffix == ".pyi"
                else text
            )
            destination = out / path.relative_to(raw)
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_text(HEADER + text)
    for package in [out, out / "auth", out / "auth" / "v1"]:
        (package / "__init__.py").write_text(HEADER)


def main() -> int:
    check = "--check" in sys.argv[1:]
    if not check:
        if TARGET.exists():
            shutil.rmtree(TARGET)
        generate(TARGET)
        return 0
    with tempfile.TemporaryDirectory() as fresh:
        generate(Path(fresh))
        compared = filecmp.dircmp(fresh, TARGET, ignore=["__pycache__"])
        drift: list[str] = []

        def walk(d: filecmp.dircmp[str], prefix: str) -> None:
            drift.extend(prefix + n for n in d.left_only + d.right_only + d.diff_files)
            # shallow=False: compare contents, not timestamps
            _, mismatch, errors = filecmp.cmpfiles(d.left, d.right, d.common_files, shallow=False)
            drift.extend(prefix + n for n in mismatch + errors if prefix + n not in drift)
            for name, sub in d.subdirs.items():
                walk(sub, f"{prefix}{name}/")

        walk(compared, "")
        if drift:
            print("generated stubs are not current; run scripts/generate.py:", *drift, sep="\n  ")
            return 1
    print("generated stubs are current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
