"""Keras in a process of its own.

Keras picks its backend once, when it is imported, so each Keras backend
(and dtype: ``floatx`` is global to Keras too) gets a worker process of its own:
``python -m polykeras_keras.worker FD KERAS_BACKEND DTYPE``, started with
``subprocess`` (not ``multiprocessing``'s *spawn*, which would re-run a user's
unguarded training script in the child). The worker sets ``KERAS_BACKEND``
and, for float64 on JAX, ``JAX_ENABLE_X64`` before importing Keras, then
serves requests on a socket: ``(op, program id, args)`` -> ``("ok", value)``
or ``("error", type name, message)``.

Messages are pickled with protocol 5 and NumPy buffers travel out of band
(one ``send_bytes`` each, no copy into the pickle), so a training step costs
one round trip of roughly the batch's size. :class:`Worker` is the client
side, one per (Keras backend, dtype) per process, started on first use and
shut down at exit.
"""

from __future__ import annotations

import atexit
import builtins
import os
import pickle
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection


class WorkerError(RuntimeError):
    """The worker process died or could not start."""


def send(conn: Connection, obj) -> None:
    buffers: list[pickle.PickleBuffer] = []
    header = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    conn.send_bytes(len(buffers).to_bytes(4, "little") + header)
    for buffer in buffers:
        conn.send_bytes(buffer.raw())


def receive(conn: Connection):
    message = conn.recv_bytes()
    count = int.from_bytes(message[:4], "little")
    buffers = [bytearray(conn.recv_bytes()) for _ in range(count)]
    return pickle.loads(message[4:], buffers=buffers)


# -- the client ------------------------------------------------------------------------------
class Worker:
    """One worker process running Keras on ``keras_backend`` in ``dtype``."""

    _lock = threading.Lock()

    _running: dict[tuple[str, str, str, int], "Worker"] = {}

    @classmethod
    def get(cls, keras_backend: str, dtype: str, device: str = "cpu", host_devices: int = 0) -> "Worker":
        """The running worker for these settings, started if there is none; ``host_devices`` > 0:
        one whose JAX has that many CPU devices (``XLA_FLAGS``; for keras-jax data parallelism)."""
        key = (keras_backend, dtype, device, host_devices)
        with cls._lock:
            worker = cls._running.get(key)
            if worker is None or worker.process.poll() is not None:
                worker = cls._running[key] = cls(keras_backend, dtype, device, host_devices)
            return worker

    def __init__(self, keras_backend: str, dtype: str, device: str = "cpu", host_devices: int = 0):
        self.keras_backend, self.dtype, self.device = keras_backend, dtype, device
        ours, theirs = socket.socketpair()
        env = dict(os.environ, KERAS_BACKEND=keras_backend)
        if host_devices:
            flags = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                             if not f.startswith("--xla_force_host_platform_device_count"))
            env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={host_devices}".strip()
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # The worker imports this package from wherever this process found it.
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        if device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""  # the backend promised the CPU
            env["JAX_PLATFORMS"] = "cpu"
        if dtype == "float64" and keras_backend == "jax":
            env["JAX_ENABLE_X64"] = "1"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "polykeras_keras.worker", str(theirs.fileno()), keras_backend, dtype],
            pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        theirs.close()
        self.conn = Connection(ours.detach())
        self.lock = threading.Lock()
        self._next_id = 0
        self._dropped: list[int] = []  # programs garbage-collected, to drop in the worker at the next call
        atexit.register(self.close)
        self.call("ping", None)  # fail now if Keras cannot start

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def drop(self, program: int) -> None:
        """Forget ``program`` in the worker, at the next call. Safe from ``__del__``: the garbage
        collector may run it in the middle of a call, which holds the lock (a call from there
        deadlocked the conformance suite's keras-numpy worker)."""
        self._dropped.append(program)

    def call(self, op: str, program: int | None, *args):
        with self.lock:
            try:
                while self._dropped:
                    send(self.conn, ("drop", self._dropped.pop(), ()))
                    receive(self.conn)
                send(self.conn, (op, program, args))
                reply = receive(self.conn)
            except (EOFError, OSError, BrokenPipeError) as exc:
                code = self.process.poll()
                raise WorkerError(f"the keras-{self.keras_backend} worker process ({self.dtype}) "
                                  f"{'exited with code ' + str(code) if code is not None else 'stopped answering'}"
                                  f" ({type(exc).__name__}); its error output is above") from None
        if reply[0] == "ok":
            return reply[1]
        _, type_name, message = reply
        error_type = getattr(builtins, type_name, None)
        if not (isinstance(error_type, type) and issubclass(error_type, Exception)):
            error_type = RuntimeError
            message = f"{type_name}: {message}"
        raise error_type(f"{message} [in the keras-{self.keras_backend} worker]")

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                with self.lock:
                    send(self.conn, ("exit", None, ()))
            except OSError:
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.conn.close()


# -- the server ------------------------------------------------------------------------------
def serve(conn: Connection, keras_backend: str, dtype: str) -> None:
    import keras

    if keras.backend.backend() != keras_backend:
        raise SystemExit(f"Keras started on {keras.backend.backend()!r}, not {keras_backend!r}")
    keras.config.set_floatx(dtype)
    from .runner import KerasRunner

    programs: dict[int, KerasRunner] = {}
    while True:
        try:
            op, pid, args = receive(conn)
        except EOFError:
            return
        if op == "exit":
            return
        try:
            if op == "ping":
                value = keras.__version__
            elif op == "devices":  # what keras.distribution can replicate over
                value = list(keras.distribution.list_devices())
            elif op == "compile":
                programs[pid] = KerasRunner(keras_backend, *args)
                value = None
            elif op == "drop":
                programs.pop(pid, None)
                value = None
            elif op == "iterations":
                value = programs[pid].iterations
            else:
                with programs[pid].scope():  # a data-parallel program's keras.distribution
                    value = getattr(programs[pid], op)(*args)
            reply = ("ok", value)
        except Exception as exc:  # sent back and re-raised in the user's process
            if not isinstance(exc, (ValueError, TypeError, NotImplementedError)):  # unexpected: show where
                import traceback

                traceback.print_exc(file=sys.stderr)
            reply = ("error", type(exc).__name__, str(exc))
        send(conn, reply)


def main(argv: list[str]) -> None:
    fd, keras_backend, dtype = int(argv[0]), argv[1], argv[2]
    serve(Connection(fd), keras_backend, dtype)


if __name__ == "__main__":
    main(sys.argv[1:])
