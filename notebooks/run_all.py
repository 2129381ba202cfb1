"""Execute every notebook in this folder headless; exit non-zero on the first error."""

import pathlib
import sys
import time

import nbclient
import nbformat

here = pathlib.Path(__file__).parent
names = sys.argv[1:] or sorted(p.name for p in here.glob("*.ipynb"))
for name in names:
    path = here / name
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(here)}}
    ).execute()
    print(f"{name}: ok in {time.perf_counter() - start:.1f} s", flush=True)
print(f"{len(names)} notebooks executed")
