"""gcp-storage-emulator on 127.0.0.1 (shared/NOTES.md): start it, and the environment a gs://
path needs (gcsfs, tensorstore, etils epath). Nothing leaves the loopback interface."""
import contextlib
import os
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def storage_emulator(workdir, bucket: str = "sf2t-test"):
    """Yields (bucket, env): the emulator's bucket and the variables that point clients at it."""
    port = free_port()
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "gcp-storage-emulator"), "start",
                               "--host", "127.0.0.1", "--port", str(port), "--default-bucket", bucket, "--in-memory",
                               "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline, "the storage emulator did not start"
                time.sleep(0.2)
        url = f"http://127.0.0.1:{port}"
        yield bucket, {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
                       "GOOGLE_AUTH_TOKEN_FOR_TESTING": "dummy", "FSSPEC_GS": '{"token": "anon"}',
                       "NO_GCE_CHECK": "true", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
                       "GOOGLE_CLOUD_PROJECT": "test"}
    finally:
        server.terminate()
        server.wait(timeout=10)
