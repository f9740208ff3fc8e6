"""``appkit ingest --engine ray``: the ingestion pipeline as a Ray Data job, for more than one machine.

What runs where:

- **The driver** (the process running ``appkit ingest``) scans the folders, compares files with the
  manifest, deletes the chunks of deleted files and writes every embedded chunk to Chroma, journalling
  the chunk ids first and committing the files' manifest rows after the write, exactly as the
  single-process engine does (both call :meth:`Ingestor.write`). The manifest is a SQLite file on the
  driver's disk, and the driver is the only writer of both the manifest and the collection, so the
  profile's store may be embedded Chroma or a Chroma server (``[store] host/port``: the one to use on
  a cluster, so the app on other machines reads the same collection).
- **Ray tasks** read, parse and split files (``map_batches`` over the file list, with the same
  :class:`~appkit.ingest.prepare.FilePreparer` as the single engine). The files must be readable at
  the same path on every node (a shared or replicated folder).
- **An actor pool** (``--workers N`` actors) embeds the chunks; each actor builds the profile's
  embedder once, on its first batch. When the Ray cluster has GPUs, each actor asks for its share of
  them (``num_gpus``) and a torch embedder runs on ``cuda``; the ONNX int8 backend stays on the CPU.

Nothing is lost or duplicated when a worker dies: Ray restarts a dead actor and retries its batch
(``max_restarts``/``max_task_retries``), chunk ids are deterministic (the same file content gives the
same ids), the driver keeps one copy of each chunk id per file and writes a file only once all of its
chunks came back, and the store write is an upsert. A file whose chunks did not all come back is
reported as skipped and is not committed, so the next run ingests it again.

Ray's usage statistics are switched off (``RAY_USAGE_STATS_ENABLED=0``) and no dashboard is started.

Example:
    >>> from appkit.config import Profile
    >>> from appkit.ingest.ray_engine import RayIngestor
    >>> from appkit.testing import HashingEmbeddings
    >>> ingestor = RayIngestor(Profile(), embeddings_factory=HashingEmbeddings)  # doctest: +SKIP
    >>> ingestor.run(["examples/docs"]).ok  # starts a local Ray  # doctest: +SKIP
    True
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from appkit.config import Profile
from appkit.errors import AppkitError
from appkit.ingest import pipeline
from appkit.ingest.pipeline import IngestReport, Ingestor, WriteBehind
from appkit.ingest.prepare import FilePreparer, PreparedFile, Skipped, clean_meta
from appkit.lazy import require
from appkit.store.chroma import ChromaStore, embedder_identity

MAX_RETRIES = 3  # restarts of a dead embedding actor, and retries of the batch it held
PREPARE_CPUS = 0.5  # parse and split are light next to embedding
FILES_PER_BLOCK = 64
COLUMNS = ("source", "root", "size", "mtime_ns", "status", "reason", "sha256", "n_chunks",
           "chunk_index", "id", "text", "meta", "prepare_s")


def ray_module() -> ModuleType:
    """Import Ray with its usage statistics switched off (the variable is read at start-up)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return require("ray", extra="ray")


class RayIngestor(Ingestor):
    """Ingest folders with Ray: parse and split in tasks, embed in an actor pool, write from here.

    Same manifest, same chunk ids and same report as :class:`Ingestor`; only the middle of the run
    (prepare and embed) is distributed.

    Example:
        >>> import tempfile
        >>> from appkit.config import Profile, StoreConfig
        >>> from appkit.ingest.ray_engine import RayIngestor
        >>> from appkit.testing import HashingEmbeddings
        >>> profile = Profile(store=StoreConfig(path=tempfile.mkdtemp()))
        >>> ingestor = RayIngestor(profile, embeddings_factory=HashingEmbeddings, workers=2)
        >>> ingestor.embedder_id  # builds the embedder, loads nothing and starts no Ray
        'hashing-256'
        >>> ingestor.run(["examples/docs"]).ok  # starts a local Ray  # doctest: +SKIP
        True

    Args:
        profile: chunking, embedding and store settings.
        embeddings_factory: builds the embedder, once in the driver (for its identity; nothing is
            loaded there) and once in each actor. Must pickle; default: the profile's embedder.
        store: the store to write to (default: the profile's Chroma collection).
        progress: show Ray Data's progress bars (default: when stderr is a terminal).
        address: a running Ray cluster (``ray://host:10001`` or ``host:6379``); default: connect
            to the Ray this process already started, else start a local one.
        workers: embedding actors.
        num_cpus: CPUs of a local Ray (default: every core).
        cpus_per_worker: CPUs each actor reserves (default: one, or a share when the cluster has
            fewer CPUs than workers plus room for the parse tasks).
        batch_size: chunks per actor call (default: 8 × ``embedding.batch_size``).
    """

    def __init__(self, profile: Profile, *,
                 embeddings_factory: Callable[[], Embeddings] | None = None,
                 store: ChromaStore | None = None, progress: bool | None = None,
                 address: str | None = None, workers: int = 2, num_cpus: int | None = None,
                 cpus_per_worker: float | None = None, batch_size: int | None = None):
        if workers < 1:
            raise AppkitError(f"--workers must be at least 1, got {workers}")
        super().__init__(profile, store=store, progress=progress)
        if embeddings_factory is None:
            from appkit.models import make_embeddings

            embeddings_factory = functools.partial(make_embeddings, profile)
        self.embeddings_factory = embeddings_factory
        self.address = address
        self.workers = workers
        self.num_cpus = num_cpus
        self.cpus_per_worker = cpus_per_worker
        self.batch_size = batch_size or max(32, 8 * profile.embedding.batch_size)

    @property
    def embeddings(self) -> Embeddings:
        """The driver's embedder: built for its identity and the store, never asked to embed."""
        if self._embeddings is None:
            self._embeddings = self.embeddings_factory()
        return self._embeddings

    @property
    def embedder_id(self) -> str:
        return embedder_identity(self.embeddings)

    # --- the distributed middle of a run -----------------------------------------------------

    def _ingest(self, todo: list[tuple[Path, str, Any]], report: IngestReport,
                note: Callable[[str, str], None]) -> None:
        if not todo:
            return  # an unchanged folder starts no Ray at all
        ray, owned = self._connect()
        try:
            self._collect(self._dataset(ray, todo), report, note)
        finally:
            if owned:
                ray.shutdown()

    def _connect(self) -> tuple[ModuleType, bool]:
        """The Ray to use, and whether this run started it (and so shuts it down)."""
        ray = ray_module()
        if ray.is_initialized():
            return ray, False
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if not self._show_progress():
            options["logging_level"] = logging.ERROR
        try:
            if self.address:
                ray.init(address=self.address, **options)
            else:
                ray.init(num_cpus=self.num_cpus or os.cpu_count() or 1, **options)
        except Exception as exc:  # noqa: BLE001 - connection errors come in many types
            where = f"the Ray cluster at '{self.address}'" if self.address else "a local Ray"
            raise AppkitError(f"cannot start or reach {where} ({type(exc).__name__}: {exc}); "
                              "check --ray-address, or leave it out to start a local Ray") from exc
        return ray, True

    def _dataset(self, ray: ModuleType, todo: list[tuple[Path, str, Any]]) -> Any:
        """files -> parse+split (tasks) -> embed (actor pool), as a lazy Ray dataset."""
        rows = []
        for path, root, st in todo:
            old = self.manifest.get(str(path))
            rows.append({"path": str(path), "root": root, "size": st.st_size,
                         "mtime_ns": st.st_mtime_ns, "old_sha256": old.sha256 if old else "",
                         "old_pipeline": old.pipeline if old else ""})
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = self._show_progress()
        if not context.enable_progress_bars:
            logging.getLogger("ray.data").setLevel(logging.ERROR)
        resources = ray.cluster_resources()
        cpus = float(resources.get("CPU", 1))
        per_worker = self.cpus_per_worker or min(1.0, max(0.1, (cpus - PREPARE_CPUS) / self.workers))
        gpus = float(resources.get("GPU", 0))
        # One parse task per block, with no regrouping (a batch size would merge small blocks):
        # enough blocks to keep every actor fed, and no more than FILES_PER_BLOCK files each.
        blocks = min(len(rows), max(4 * self.workers, -(-len(rows) // FILES_PER_BLOCK)))
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
        ds = ds.map_batches(_prepare_files, fn_kwargs={"preparer": self.preparer}, batch_size=None,
                            batch_format="numpy", num_cpus=PREPARE_CPUS)
        with warnings.catch_warnings():
            # Ray 2.60 deprecates passing max_restarts/max_task_retries this way but has no other
            # way yet; its default is to retry forever, which hangs on a batch that always kills
            # its worker. The extra pins Ray, so this keeps working until the pin moves.
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            return ds.map_batches(
                EmbedChunks, fn_constructor_kwargs={"factory": self.embeddings_factory,
                                                    "identity": self.embedder_id,
                                                    "threads": max(1, int(per_worker))},
                batch_size=self.batch_size, batch_format="pandas",
                # A handful of files needs fewer actors (each one loads the model).
                compute=ray.data.ActorPoolStrategy(size=min(self.workers, blocks)),
                num_cpus=per_worker, num_gpus=min(1.0, gpus / self.workers) if gpus else None,
                max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES,
            )

    def _show_progress(self) -> bool:
        return bool(self.progress if self.progress is not None else os.isatty(2))

    def _collect(self, ds: Any, report: IngestReport, note: Callable[[str, str], None]) -> None:
        """Reassemble files from the chunk rows as they stream in, and write complete files."""
        timings = report.timings
        partial: dict[str, dict[int, tuple]] = {}  # source -> chunk index -> row (retries dedupe)
        first_rows: dict[str, Any] = {}
        done: set[str] = set()
        batch: list[PreparedFile] = []
        vectors: list[list[float]] = []
        # The driver writes one batch while the actors' next rows stream in.
        with WriteBehind(self, report, note) as writer:
            for frame in ds.iter_batches(batch_format="pandas", batch_size=None):
                timings["load_split"] += float(frame["prepare_s"].sum())
                timings["embed"] += float(frame["embed_s"].sum())
                for row in frame.itertuples(index=False):
                    source = row.source
                    if source in done:
                        continue
                    if row.status != "chunk":
                        done.add(source)
                        result = Skipped(source, row.reason) if row.status == "skipped" else None
                        self._settle(source, int(row.mtime_ns), result, report, note)
                        continue
                    chunks = partial.setdefault(source, {})
                    first_rows.setdefault(source, row)
                    chunks[int(row.chunk_index)] = row
                    if len(chunks) < int(row.n_chunks):
                        continue
                    done.add(source)
                    del partial[source]
                    prepared, vecs = self._assemble(first_rows.pop(source), chunks)
                    batch.append(prepared)
                    vectors.extend(vecs)
                    if len(vectors) >= pipeline.BATCH_CHUNKS:
                        writer.submit(batch, vectors)
                        batch, vectors = [], []
            writer.submit(batch, vectors)
        for source, chunks in sorted(partial.items()):  # not committed: the next run retries them
            total = int(next(iter(chunks.values())).n_chunks)
            report.skipped.append(Skipped(source, f"only {len(chunks)} of {total} chunks came "
                                                  "back from the Ray job; run again"))
            note(source, "skipped")

    def _assemble(self, first: Any, chunks: dict[int, Any]) -> tuple[PreparedFile, list]:
        source = str(first.source)
        rows = [chunks[i] for i in range(int(first.n_chunks))]
        docs = [Document(page_content=r.text, metadata=json.loads(r.meta)) for r in rows]
        prepared = PreparedFile(Path(source), str(first.root), str(first.sha256), int(first.size),
                                int(first.mtime_ns), docs, [str(r.id) for r in rows],
                                old=self.manifest.get(source))
        return prepared, [_unpack(r.vector) for r in rows]


def _prepare_files(batch: dict[str, Any], preparer: FilePreparer) -> Any:
    """Ray task: one row per chunk of each file, or one row saying the file is unchanged/skipped."""
    import pandas as pd

    rows = []
    for path, root, size, mtime, old_sha, old_pipeline in zip(
            batch["path"], batch["root"], batch["size"], batch["mtime_ns"], batch["old_sha256"],
            batch["old_pipeline"]):
        t0 = time.perf_counter()
        result = preparer.prepare(Path(str(path)), str(root), int(size), int(mtime),
                                  old_sha256=str(old_sha), old_pipeline=str(old_pipeline))
        seconds = time.perf_counter() - t0
        base = {"source": str(path), "root": str(root), "size": int(size), "mtime_ns": int(mtime),
                "status": "unchanged", "reason": "", "sha256": "", "n_chunks": 0, "chunk_index": 0,
                "id": "", "text": "", "meta": "{}", "prepare_s": seconds}
        if result is None:
            rows.append(base)
        elif isinstance(result, Skipped):
            rows.append({**base, "status": "skipped", "reason": result.reason})
        else:
            for i, (chunk, cid) in enumerate(zip(result.chunks, result.ids)):
                rows.append({**base, "status": "chunk", "sha256": result.sha256,
                             "n_chunks": len(result.ids), "chunk_index": i, "id": cid,
                             "text": chunk.page_content, "meta": json.dumps(clean_meta(chunk.metadata)),
                             "prepare_s": seconds if i == 0 else 0.0})
    return pd.DataFrame(rows, columns=list(COLUMNS))


class EmbedChunks:
    """Ray actor: embeds the chunk rows of a batch, building its embedder on the first batch.

    Example:
        >>> import pandas as pd
        >>> from appkit.ingest.ray_engine import EmbedChunks
        >>> from appkit.testing import HashingEmbeddings
        >>> actor = EmbedChunks(HashingEmbeddings, "hashing-256")
        >>> out = actor(pd.DataFrame({"status": ["chunk", "skipped"], "text": ["hi", ""]}))
        >>> [len(v) for v in out["vector"]]  # float32 bytes
        [1024, 0]

    Args:
        factory: builds the embedder (in the actor's process).
        identity: the embedder identity the driver stamps the collection with; an actor whose
            embedder differs (another backend installed on that node, say) refuses to embed.
        threads: compute threads for the encoder (0: the library's default, one per core).
    """

    def __init__(self, factory: Callable[[], Embeddings], identity: str, threads: int = 0):
        self.factory = factory
        self.identity = identity
        self.threads = threads
        self._embeddings: Embeddings | None = None

    def _load(self) -> Embeddings:
        embeddings = self.factory()
        found = embedder_identity(embeddings)
        if found != self.identity:
            raise AppkitError(f"a Ray worker built the embedder '{found}', but the driver's is "
                              f"'{self.identity}': install the same appkit extras on every node")
        if hasattr(embeddings, "device") and _has_gpu():
            embeddings.device = "cuda"
        if self.threads:
            # Each actor computes with the CPUs Ray gave it: left alone, every actor's encoder
            # would start one thread per core of the node, and they would fight over the cores.
            if hasattr(embeddings, "threads"):
                embeddings.threads = self.threads
            if "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(self.threads)
            else:  # torch reads it when it is first imported (by the embedder, on first use)
                os.environ["OMP_NUM_THREADS"] = str(self.threads)
        return embeddings

    def __call__(self, batch: Any) -> Any:
        if self._embeddings is None:
            self._embeddings = self._load()
        is_chunk = (batch["status"] == "chunk").tolist()
        texts = [t for t, keep in zip(batch["text"].tolist(), is_chunk) if keep]
        t0 = time.perf_counter()
        found = iter(self._embeddings.embed_documents(texts) if texts else [])
        seconds = time.perf_counter() - t0
        out = batch.copy()
        out["vector"] = [_pack(next(found)) if keep else b"" for keep in is_chunk]
        out["embed_s"] = [seconds if i == 0 else 0.0 for i in range(len(out))]
        return out


def _pack(vector: Any) -> bytes:
    """A vector as float32 bytes: one column type whatever the batch holds (Chroma stores float32)."""
    import numpy as np

    return np.asarray(vector, dtype=np.float32).tobytes()


def _unpack(data: bytes) -> list[float]:
    import numpy as np

    return np.frombuffer(data, dtype=np.float32).tolist()


def _has_gpu() -> bool:
    try:
        import ray

        return bool(ray.get_gpu_ids())
    except Exception:  # noqa: BLE001 - outside Ray (the doctest) there is no GPU assignment
        return False
