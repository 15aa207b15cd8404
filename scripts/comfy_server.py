"""Start a real ComfyUI with this pack loaded, submit API-format prompts, wait for them: no ComfyUI import.

Shared by scripts/run_workflow.py (the headless runner) and tests/integration (one server per session).
ComfyUI runs as a child process and is reached over its HTTP API only (notes/comfyui-integration.md §1e):
    POST /prompt {"prompt": graph, "client_id"} -> {"prompt_id"} or HTTP 400 {"error", "node_errors"}
    GET  /history/<prompt_id>                  -> {prompt_id: {"outputs", "status": {"status_str", "messages"}}}
    POST /interrupt                            -> stops the running prompt
Everything the server writes (outputs, temp, input, user settings, its database) goes to a temporary
folder, never into the ComfyUI checkout, and its custom_nodes path holds nothing but a link to this pack
(plus the `extra_packs` folders a caller names, e.g. the integration tests' tiny family stand-ins).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

PACK_ROOT = pathlib.Path(__file__).resolve().parents[1]
PACK_LINK_NAME = "sync_canvas"


class ServerError(RuntimeError):
    """The ComfyUI process did not start, died, or did not answer; carries the tail of its log."""


class PromptRejected(RuntimeError):
    """POST /prompt answered HTTP 400: ComfyUI's validation refused the graph.

    `error` is ComfyUI's {"type", "message", "details"}; `node_errors` maps node id ->
    {"errors": [{"type", "message", "details", "extra_info"}], "class_type", ...}.
    """

    def __init__(self, error: dict, node_errors: dict):
        self.error, self.node_errors = error, node_errors
        lines = [f"{error.get('type')}: {error.get('message')} {error.get('details', '')}".strip()]
        for node_id, info in node_errors.items():
            for e in info.get("errors", []):
                lines.append(f"  node {node_id} ({info.get('class_type')}): {e.get('message')}: {e.get('details')}")
        super().__init__("\n".join(lines))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_extra_model_paths(path: pathlib.Path, custom_nodes_dir: pathlib.Path,
                            models_dir: pathlib.Path | None) -> None:
    """An extra_model_paths.yaml: ComfyUI also loads packs from custom_nodes_dir and models from models_dir.

    ComfyUI's own models folder keeps working (the yaml adds paths, it does not replace them), which is
    how a user's checkpoint stays reachable next to the tiny demo models.
    """
    lines = ["sync_canvas_run:", f"  custom_nodes: {json.dumps(str(custom_nodes_dir))}"]
    if models_dir is not None:
        lines.append(f"  base_path: {json.dumps(str(models_dir))}")
        lines += [f"  {kind}: {kind}" for kind in ("checkpoints", "controlnet", "diffusion_models", "loras", "vae")]
    path.write_text("\n".join(lines) + "\n")


class ComfyServer:
    """One ComfyUI server process on 127.0.0.1:<free port> with this pack linked in as `sync_canvas`.

        with ComfyServer(comfyui_path, models_dir=...) as server:
            prompt_id = server.submit(graph)
            entry = server.wait(prompt_id)

    work_dir holds custom_nodes/ (only the link), output/, temp/, input/, user/, the yaml and server.log;
    a temporary one is made (and removed on stop) when not given.
    """

    def __init__(self, comfyui_path, models_dir=None, work_dir=None, python=None, port=None,
                 extra_args=(), startup_timeout=180.0, pack_root=PACK_ROOT, cpu=True, extra_packs=()):
        self.comfyui_path = pathlib.Path(comfyui_path).resolve()
        if not (self.comfyui_path / "main.py").is_file():
            raise ValueError(f"COMFYUI_PATH={str(self.comfyui_path)!r} has no main.py: not a ComfyUI checkout")
        self.models_dir = None if models_dir is None else pathlib.Path(models_dir).resolve()
        self._own_work_dir = work_dir is None
        self.work_dir = pathlib.Path(work_dir or tempfile.mkdtemp(prefix="sync_canvas_comfy_")).resolve()
        self.python = python or sys.executable
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = list(extra_args)
        self.cpu = cpu  # tests always run on the CPU; the runner uses a GPU when torch sees one
        self.startup_timeout = startup_timeout
        self.pack_root = pathlib.Path(pack_root).resolve()
        self.extra_packs = [pathlib.Path(p).resolve() for p in extra_packs]  # more custom-node folders (tests)
        self.output_dir = self.work_dir / "output"
        self.log_path = self.work_dir / "server.log"
        self.client_id = uuid.uuid4().hex
        self.process: subprocess.Popen | None = None
        self.startup_seconds: float | None = None
        self._log_file = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "ComfyServer":
        custom_nodes = self.work_dir / "custom_nodes"
        for sub in (custom_nodes, self.output_dir, self.work_dir / "temp", self.input_dir, self.work_dir / "user"):
            sub.mkdir(parents=True, exist_ok=True)
        link = custom_nodes / PACK_LINK_NAME
        if not link.exists():
            link.symlink_to(self.pack_root, target_is_directory=True)
        for extra in self.extra_packs:
            if not (custom_nodes / extra.name).exists():
                (custom_nodes / extra.name).symlink_to(extra, target_is_directory=True)
        yaml_path = self.work_dir / "extra_model_paths.yaml"
        write_extra_model_paths(yaml_path, custom_nodes, self.models_dir)
        cmd = [self.python, "main.py", *(["--cpu"] if self.cpu else []), "--listen", "127.0.0.1", "--port", str(self.port),
               "--extra-model-paths-config", str(yaml_path), "--output-directory", str(self.output_dir),
               "--temp-directory", str(self.work_dir / "temp"), "--input-directory", str(self.input_dir),
               "--user-directory", str(self.work_dir / "user"), "--database-url", f"sqlite:///{self.work_dir / 'user' / 'comfyui.db'}",
               "--disable-auto-launch", "--disable-api-nodes", *self.extra_args]
        self._log_file = open(self.log_path, "wb")
        start = time.perf_counter()
        # Own process group, so stop() also reaches anything the server spawned.
        self.process = subprocess.Popen(cmd, cwd=self.comfyui_path, stdout=self._log_file, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})  # log readable while running
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.perf_counter() - start
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"ComfyUI exited with code {self.process.returncode} during startup\n{self.log_tail()}")
            try:
                self.get("/object_info/CheckpointLoaderSimple", timeout=5)
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.5)
        raise ServerError(f"ComfyUI did not answer /object_info within {self.startup_timeout:.0f} s\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminates the server (SIGTERM, then SIGKILL after 10 s); removes a temporary work_dir."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    @property
    def input_dir(self) -> pathlib.Path:
        return self.work_dir / "input"

    def add_input_files(self, paths) -> list[str]:
        """Copies files (e.g. a workflow's depth map for LoadImage) into the server's input folder; their names."""
        self.input_dir.mkdir(parents=True, exist_ok=True)
        return [pathlib.Path(shutil.copy2(path, self.input_dir / pathlib.Path(path).name)).name for path in paths]

    def __enter__(self) -> "ComfyServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-chars:].decode("utf-8", "replace")
        except OSError:
            return "(no server log)"

    # -- HTTP --------------------------------------------------------------------------------------
    def _request(self, path: str, body=None, timeout: float = 30.0):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data,
                                     headers={"Content-Type": "application/json"} if data is not None else {})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw.strip() else None

    def get(self, path: str, timeout: float = 30.0):
        return self._request(path, timeout=timeout)

    def post(self, path: str, body: dict, timeout: float = 30.0):
        return self._request(path, body=body, timeout=timeout)

    def object_info(self) -> dict:
        """Every registered node: {node_id: {"input", "input_order", "output", "output_name", ...}}."""
        return self.get("/object_info", timeout=120)

    def submit(self, graph: dict) -> str:
        """POST an API-format graph to /prompt; returns its prompt_id, raises PromptRejected on HTTP 400."""
        try:
            answer = self.post("/prompt", {"prompt": graph, "client_id": self.client_id})
        except urllib.error.HTTPError as err:
            if err.code != 400:
                raise
            body = json.loads(err.read() or b"{}")
            raise PromptRejected(body.get("error", {}), body.get("node_errors", {})) from None
        return answer["prompt_id"]

    def history(self, prompt_id: str) -> dict | None:
        return (self.get(f"/history/{urllib.parse.quote(prompt_id)}") or {}).get(prompt_id)

    def wait(self, prompt_id: str, timeout: float = 600.0, poll: float = 0.2) -> dict:
        """Polls /history until the prompt finished (success, error or interrupted); returns its entry.

        The entry has "outputs" {node_id: {"images": [{"filename", "subfolder", "type"}]}} and
        "status" {"status_str": "success"|"error", "completed", "messages": [[event, data], ...]}.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.history(prompt_id)
            if entry is not None and "status" in entry:  # ComfyUI writes history once the prompt ended
                return entry
            if not self.alive():
                raise ServerError(f"ComfyUI died while running {prompt_id}\n{self.log_tail()}")
            time.sleep(poll)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s")

    def run(self, graph: dict, timeout: float = 600.0) -> dict:
        """submit + wait; returns the history entry with "seconds" (submit to finish) added."""
        start = time.perf_counter()
        entry = self.wait(self.submit(graph), timeout=timeout)
        entry["seconds"] = time.perf_counter() - start
        return entry

    def interrupt(self) -> None:
        self.post("/interrupt", {})

    def output_files(self, entry: dict) -> list[pathlib.Path]:
        """Files the prompt wrote into the output folder, in node order (temp/preview images excluded)."""
        files = []
        for node_id in sorted(entry.get("outputs", {}), key=_node_sort_key):
            for items in entry["outputs"][node_id].values():
                for item in items if isinstance(items, list) else []:
                    if isinstance(item, dict) and item.get("type") == "output" and "filename" in item:
                        files.append(self.output_dir / item.get("subfolder", "") / item["filename"])
        return files


def status_of(entry: dict) -> str:
    """"success", "interrupted" or "error" for a finished /history entry."""
    status = entry.get("status", {})
    events = [m[0] for m in status.get("messages", [])]
    if "execution_interrupted" in events:
        return "interrupted"
    return "success" if status.get("status_str") == "success" else "error"


def error_message(entry: dict) -> str:
    """The node error of a failed prompt as one readable line ("" if none)."""
    for event, data in entry.get("status", {}).get("messages", []):
        if event == "execution_error":
            return (f"node {data.get('node_id')} ({data.get('node_type')}): "
                    f"{data.get('exception_type')}: {data.get('exception_message', '').strip()}")
    return ""


def _node_sort_key(node_id: str):
    return (0, int(node_id), "") if str(node_id).isdigit() else (1, 0, str(node_id))
