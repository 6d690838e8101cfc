#!/usr/bin/env python3
"""How ``teeform preview`` scales with the number of targets sharing one large EIF.

Writes one EIF of ``--eif-mib`` MiB (default 1024; a sparse file: the hashing still reads every
byte, the kernel just serves zeros) and its manifest, then for each N in ``--targets`` (default
10 100) a stack file with N aws/nitro-enclave targets all naming that manifest, and runs
``teeform preview --stack bench --json`` on it as a user does (the console script's
``teeform.cli.entry``: the real program under the mock engine plus the whole policy pack), timed
from the outside: interpreter start to process exit, with its CPU time and peak RSS from
``os.wait4`` (KiB on Linux). ``--profile N`` profiles an in-process run instead.

Printed: per N the wall time, the cost per target, the peak RSS; the ratio of the two per-target
costs (flat scaling is ~1, worse than linear is > 1); and each run relative to one streaming
SHA-384 pass over the EIF (hashlib, 1 MiB reads), which is what a preview that hashes the EIF once
per run must at least spend. Targets (issue 7 item 8): 100 targets in < 10 s on 2 cores, peak RSS
< 256 MiB. ``--repeat`` runs each N several times and keeps the fastest (shared-machine noise).

Usage: ``.venv/bin/python benchmarks/preview_scaling.py [--eif-mib 1024] [--targets 10 100] [--repeat 1]``
``[--profile N]`` (``--profile N`` prints the top of a cProfile of the N-target run instead).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIB = 1 << 20


def write_inputs(workdir: Path, eif_mib: int) -> Path:
    """The sparse EIF and a valid manifest for it (made-up measurements); returns the manifest path."""
    sys.path.insert(0, str(REPO))
    from teeform.manifest import Artifact, ArtifactKind, Builder, InputDigest, Manifest, write_manifest

    eif = workdir / "bench.eif"
    with open(eif, "wb") as fh:
        fh.truncate(eif_mib * MIB)
    fake = {k: hashlib.sha384(f"bench:{k}".encode()).hexdigest() for k in ("PCR0", "PCR1", "PCR2")}
    m = Manifest(
        kind=ArtifactKind.EIF, name="bench", version="1", artifact=Artifact.from_file(eif),
        measurements={**fake, "ImageSha384": fake["PCR0"]},
        inputs=(InputDigest("kernel", "bzImage", hashlib.sha256(b"kernel").hexdigest(), 1),),
        builder=Builder("teeform", "bench"), source_date_epoch=0,
    )
    path = workdir / "bench.manifest.json"
    write_manifest(m, path)
    return path


def write_stack(workdir: Path, manifest: Path, n: int, eif_mib: int) -> Path:
    """A stack file with ``n`` targets naming ``manifest`` (enclave memory: nitro-cli's 4 x the EIF)."""
    import yaml

    memory = max(1024, 4 * eif_mib)

    targets = [
        {
            "name": f"agent{i}", "cloud": "aws", "region": "eu-west-1", "tee": "nitro-enclave",
            "manifests": [str(manifest)], "instanceType": "m6i.4xlarge", "enclave": {"cpuCount": 2, "memoryMib": memory},
            "attestation": {"pcrs": ["PCR0", "PCR1", "PCR2"], "imageSha384": True},
        }
        for i in range(n)
    ]
    doc = {"config": {"aws:region": "eu-west-1", "teeform:environment": "dev", "teeform:targets": targets}}
    path = workdir / f"Pulumi.bench-{n}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def child(stack_file: Path, profile: bool) -> None:
    """Run the preview in this process and print ``{"wall", "cpu", "maxrss_kib", "rc", "resources"}``."""
    import contextlib
    import io
    import resource

    sys.path.insert(0, str(REPO))
    t0, c0 = time.perf_counter(), time.process_time()
    from teeform.cli import main

    out = io.StringIO()
    argv = ["preview", "--project-dir", str(REPO), "--stack", "bench", "--stack-file", str(stack_file), "--json"]
    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        with contextlib.redirect_stdout(out):
            rc = prof.runcall(main, argv)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(45)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    else:
        with contextlib.redirect_stdout(out):
            rc = main(argv)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n_res = len(json.loads(out.getvalue())["resources"]) if rc in (0, 1) else 0
    print(json.dumps({"wall": wall, "cpu": cpu, "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "rc": rc, "resources": n_res}))


def sha384_pass(path: Path) -> float:
    t0 = time.perf_counter()
    h = hashlib.sha384()
    with open(path, "rb") as fh:
        while chunk := fh.read(MIB):
            h.update(chunk)
    return time.perf_counter() - t0


def run_cli(stack: Path) -> dict:
    """Run the ``teeform`` console script (``teeform.cli.entry``, what a user runs) on ``stack`` and
    time the whole process from the outside: interpreter start, the preview, writing the JSON and
    the exit. CPU time and peak RSS come from ``os.wait4`` (this child only)."""
    cmd = [sys.executable, "-c", "from teeform.cli import entry; entry()", "preview", "--project-dir", str(REPO),
           "--stack", "bench", "--stack-file", str(stack), "--json"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, errors = out.read(), err.read().decode(errors="replace")
    if proc.returncode not in (0, 1):
        sys.exit(f"teeform preview failed ({proc.returncode}): {errors.strip()[-2000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "maxrss_kib": usage.ru_maxrss,
            "rc": proc.returncode, "resources": len(json.loads(text)["resources"])}


def run_child(stack: Path, profile: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", str(stack)] + (["--profile-child"] if profile else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if profile:
        sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["rc"] not in (0, 1):
        sys.exit(f"teeform preview failed: {proc.stderr.strip()[-2000:]}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eif-mib", type=int, default=1024)
    ap.add_argument("--targets", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--profile", type=int, metavar="N")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--profile-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.profile_child)
        return
    with tempfile.TemporaryDirectory(prefix="teeform-preview-bench-") as tmp:
        work = Path(tmp)
        manifest = write_inputs(work, args.eif_mib)
        eif = work / "bench.eif"
        ref = min(sha384_pass(eif) for _ in range(max(1, args.repeat)))
        print(f"EIF {args.eif_mib} MiB (sparse), one streaming SHA-384 pass: {ref:.2f} s; {os.cpu_count()} CPU(s)")
        if args.profile:
            run_child(write_stack(work, manifest, args.profile, args.eif_mib), profile=True)
            return
        results = {}
        for n in args.targets:
            stack = write_stack(work, manifest, n, args.eif_mib)
            best = min((run_cli(stack) for _ in range(max(1, args.repeat))), key=lambda r: r["wall"])
            results[n] = best
            print(f"N={n:4d}: wall {best['wall']:6.2f} s  cpu {best['cpu']:6.2f} s  per target {best['wall'] / n * 1000:7.1f} ms  "
                  f"peak RSS {best['maxrss_kib'] / 1024:6.1f} MiB  resources {best['resources']}  rc {best['rc']}  "
                  f"= {best['wall'] / ref:5.2f}x one SHA-384 pass")
        ns = sorted(results)
        if len(ns) >= 2:
            lo, hi = ns[0], ns[-1]
            per_lo, per_hi = results[lo]["wall"] / lo, results[hi]["wall"] / hi
            print(f"per-target cost N={hi} / N={lo}: {per_hi / per_lo:.2f} (<= 1: no worse than linear)")
            print(f"wall N={hi} / N={lo}: {results[hi]['wall'] / results[lo]['wall']:.2f} for {hi / lo:.0f}x the targets")
        top = results[ns[-1]]
        print(f"targets: N={ns[-1]} wall {top['wall']:.2f} s (goal < 10 s at N=100), "
              f"peak RSS {top['maxrss_kib'] / 1024:.1f} MiB (goal < 256 MiB)")


if __name__ == "__main__":
    main()
