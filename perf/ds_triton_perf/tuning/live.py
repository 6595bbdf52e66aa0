"""The live server a tune run measures: tritonserver over a scratch copy of one model folder.

The model folder is copied (checkpoint files hard-linked, so nothing large
is written) into a scratch repository, and the server runs with explicit
model control. Each candidate is deployed the way an operator would:
``model.json`` written, ``config.pbtxt`` rendered from it, then the model
unloaded (every stub of the old configuration gone) and loaded again through
Triton's repository API. Only the scratch copy changes; the user's
repository is touched only by ``--apply``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from types import TracebackType

from ds_triton.checkpoint_files import PACKAGE_PREFIX, ROOTS_ENV
from ds_triton.errors import SpecError
from ds_triton.repository.layout import ModelFolder
from ds_triton.repository.machine import detect_gpu_ids
from ds_triton.repository.scaffold import spec_json
from ds_triton.repository.writer import render_spec, write_rendered, write_text_atomic
from ds_triton.server_process.triton_api import TritonApi, TritonApiError
from ds_triton.server_process.tritonserver import (
    Ports,
    ServerOptions,
    ServerStartError,
    TritonServer,
    running_server,
)
from ds_triton.spec import ModelSpec
from ds_triton_perf.memory import process_memory
from ds_triton_perf.systems import ServerUrls

UNLOAD_TIMEOUT_S = 120.0
LOAD_TIMEOUT_S = 600.0


class DeployError(RuntimeError):
    """A candidate did not load; the message is Triton's reason."""


class LiveModel:
    """One model served from a scratch repository, redeployable candidate by candidate."""

    def __init__(self, source: ModelFolder, work_dir: Path) -> None:
        self.source = source
        self.work_dir = work_dir
        self.folder = ModelFolder(work_dir / "repository" / source.name)
        self.spec = self._scratch_copy()
        self._stack = contextlib.ExitStack()
        self.server: TritonServer | None = None
        self.gpu_ids = detect_gpu_ids()
        self._options = ServerOptions(
            model_repository=self.folder.root.parent, ports=Ports.free(), run_dir=work_dir / "run",
            model_control="explicit", models=[self.name],
        )

    @property
    def name(self) -> str:
        return self.folder.name

    def __enter__(self) -> LiveModel:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stack.close()

    @property
    def urls(self) -> ServerUrls:
        """Where the server listens (known before it starts: it starts with the first deploy)."""
        host, ports = self._options.connect_host, self._options.ports
        return ServerUrls(f"{host}:{ports.http}", f"{host}:{ports.grpc}", f"http://{host}:{ports.metrics}/metrics")

    def deploy(self, spec: ModelSpec) -> float:
        """Serve ``spec`` (a full unload, then a load); returns the seconds it took.

        Raises:
            DeployError: the spec does not render, or Triton could not load it.
        """
        started = time.monotonic()
        try:
            rendered = render_spec(self.folder, spec, self.gpu_ids)
        except SpecError as exc:
            raise DeployError(str(exc)) from None
        write_text_atomic(self.folder.spec_path, spec_json(spec))
        write_rendered(rendered)
        if self.server is None:  # the server's own start loads what was just written
            self._server()
            self.spec = spec
            return time.monotonic() - started
        api = TritonApi(self.server.http_url)
        api.unload(self.name)
        self._wait_unloaded(api)
        try:
            api.load(self.name, timeout=LOAD_TIMEOUT_S)
        except TritonApiError as exc:
            raise DeployError(str(exc)) from None
        if not api.ready(self.name):
            raise DeployError(f"{self.name} loaded but is not ready: {api.index().get(self.name)}")
        self.spec = spec
        return time.monotonic() - started

    def serves(self, spec: ModelSpec) -> bool:
        """Whether ``spec`` is what the server has loaded now (no redeploy needed)."""
        return self.server is not None and self.spec == spec

    def instances_rss(self) -> int:
        """Resident memory of the model's instance stubs together, in bytes."""
        found = (process_memory(stub.pid) for stub in self._server().stubs() if stub.model == self.name)
        return sum(memory.rss_bytes for memory in found if memory is not None)

    def _wait_unloaded(self, api: TritonApi) -> None:
        deadline = time.monotonic() + UNLOAD_TIMEOUT_S
        server = self._server()
        while time.monotonic() < deadline:
            state = api.index().get(self.name)
            stubs = [s for s in server.stubs() if s.model == self.name]
            if not stubs and (state is None or state.state not in ("READY", "UNLOADING")):
                return
            if server.poll() is not None:
                raise DeployError(f"tritonserver exited (code {server.poll()}); "
                                  f"see {self.work_dir}/server.log")
            time.sleep(0.2)
        raise DeployError(f"{self.name} did not unload within {UNLOAD_TIMEOUT_S:.0f}s")

    def _server(self) -> TritonServer:
        """The server, started on first use (a resumed run that replays everything needs none)."""
        if self.server is None:
            try:
                self.server = self._stack.enter_context(running_server(
                    self._options, log_path=self.work_dir / "server.log", ready_timeout=LOAD_TIMEOUT_S,
                    models=[self.name]))
            except ServerStartError as exc:
                raise DeployError(str(exc)) from None
        return self.server

    def _scratch_copy(self) -> ModelSpec:
        """Copy the model folder; a checkpoint outside it is referenced where it is."""
        spec = ModelSpec.load(self.source.spec_path)
        if self.folder.root.exists():
            shutil.rmtree(self.folder.root)
        _link_tree(self.source.root, self.folder.root)
        reference = spec.checkpoint
        if not reference.startswith(PACKAGE_PREFIX):
            path = Path(reference).expanduser()
            path = (path if path.is_absolute() else self.source.version_dir / path).resolve()
            if not path.is_relative_to(self.source.root.resolve()):
                # Inside the user's repository but outside the model folder: allow that
                # repository as a checkpoint root for this run, so the same files load.
                roots = [r for r in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if r]
                os.environ[ROOTS_ENV] = os.pathsep.join([*roots, str(self.source.root.parent.resolve())])
                spec = ModelSpec.from_dict({**spec.to_dict(), "checkpoint": str(path)})
                write_text_atomic(self.folder.spec_path, spec_json(spec))
        return spec


def _link_tree(source: Path, target: Path) -> None:
    """Copy a folder, hard-linking files (plain copies across file systems)."""
    try:
        shutil.copytree(source, target, copy_function=os.link)
    except (OSError, shutil.Error):
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
