"""``appkit doctor``: what is installed, how llama.cpp was built, and whether the models are intact.

Example:
    >>> from appkit.doctor import package_versions
    >>> "langchain-core" in package_versions()
    True
"""

from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from appkit import __version__

PACKAGES = (
    "langchain-core", "langchain-text-splitters", "langchain-chroma", "langchain-huggingface",
    "chromadb", "sentence-transformers", "transformers", "torch", "llama-cpp-python", "pypdf",
    "python-docx", "beautifulsoup4",
)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def llama_cpp_build() -> dict[str, Any]:
    """The llama.cpp backend compiled into llama-cpp-python (CPU, CUDA, Metal…)."""
    try:
        import llama_cpp
    except ImportError:
        return {"installed": False}
    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    backend = "CPU"
    for name in ("CUDA", "Metal", "Vulkan", "HIP", "SYCL"):
        if name.upper() in info.upper() and gpu:
            backend = name
    from appkit.models.llama_cpp import default_threads

    return {"installed": True, "backend": backend, "gpu_offload": gpu, "system_info": info.strip(),
            "default_threads": default_threads()}


def model_status(verify: bool = False) -> list[dict[str, Any]]:
    """Each catalogue model: installed, its file, and its checksum (re-hashed with ``verify``)."""
    from appkit.errors import AppkitError
    from appkit.models.catalogue import list_models, resolve_model, sha256_file, verified_checksum

    rows = []
    for spec in list_models():
        row: dict[str, Any] = {"name": spec.name, "role": spec.role, "installed": spec.installed}
        if spec.installed:
            try:
                if verify or spec.filename:
                    _, path = resolve_model(spec.name)
                    row["path"] = str(path)
                    if verify and path.is_file():
                        actual = sha256_file(path)
                        row["sha256"] = actual
                        row["checksum_ok"] = not spec.sha256 or actual == spec.sha256
                    else:
                        row["sha256"] = verified_checksum(spec)
                        row["checksum_ok"] = True
                else:
                    row["path"] = None
            except AppkitError as exc:
                row["error"] = str(exc)
                row["checksum_ok"] = False
        else:
            row["install"] = spec.install
        rows.append(row)
    return rows


def diagnose(profile_path: str | None = None, *, verify: bool = False) -> dict[str, Any]:
    from appkit.config import find_profile
    from appkit.errors import AppkitError

    report: dict[str, Any] = {
        "appkit": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
        "llama_cpp": llama_cpp_build(),
        "models": model_status(verify),
    }
    try:
        profile = find_profile(profile_path, create=False)
        report["profile"] = {"path": str(profile.source), "exists": bool(profile.source and
                                                                     profile.source.exists()),
                             "chat_model": profile.chat.model,
                             "embedding_model": profile.embedding.model,
                             "data_dir": str(profile.data_dir)}
        manifest = profile.data_dir / "manifest.sqlite"
        if manifest.exists():
            from appkit.ingest.manifest import Manifest

            report["profile"]["files_ingested"] = Manifest(manifest).count()
    except AppkitError as exc:
        report["profile"] = {"error": str(exc)}
    problems = [m["name"] for m in report["models"] if m.get("error")]
    report["ok"] = not problems and report["llama_cpp"].get("installed", False)
    return report


def render(report: dict[str, Any]) -> str:
    lines = [f"appkit {report['appkit']} on Python {report['python']} ({report['platform']}), "
             f"{report['cpu_count']} CPUs"]
    ll = report["llama_cpp"]
    if ll.get("installed"):
        lines.append(f"llama.cpp backend: {ll['backend']} (GPU offload: {ll['gpu_offload']}), "
                     f"default threads {ll['default_threads']}")
        lines.append(f"  {ll['system_info']}")
    else:
        lines.append("llama.cpp: not installed (pip install 'appkit[chat]')")
    lines.append("packages:")
    for name, ver in report["packages"].items():
        lines.append(f"  {name:<26} {ver or 'not installed'}")
    lines.append("models:")
    for m in report["models"]:
        if not m["installed"]:
            lines.append(f"  {m['name']:<22} not installed: {m['install']}")
        elif m.get("error"):
            lines.append(f"  {m['name']:<22} PROBLEM: {m['error']}")
        else:
            check = m.get("sha256") or "(file used in place from its package)"
            lines.append(f"  {m['name']:<22} ok  {m.get('path') or ''}  sha256 {check}")
    prof = report.get("profile", {})
    if "error" in prof:
        lines.append(f"profile: {prof['error']}")
    else:
        lines.append(f"profile: {prof['path']} ({'exists' if prof['exists'] else 'defaults'}), "
                     f"chat {prof['chat_model']}, embeddings {prof['embedding_model']}, "
                     f"{prof.get('files_ingested', 0)} files ingested")
    lines.append("ok" if report["ok"] else "problems found")
    return "\n".join(lines)
