#!/usr/bin/env python3
"""Profiles keygate in the `hot` (default) or `spread` scenario (driven by bench/profile).

Same setup as the suite (throwaway PostgreSQL and Redis with the benchmark keys, the nginx
upstream, keygate `threads: 1` pinned to the server core, wrk on the client core), then:
  callgrind  keygate runs under `valgrind --tool=callgrind` with instrumentation switched on
             only for the measured load (after a warm-up that fills the L1 cache); then
             callgrind_annotate, self and inclusive, with file:line when keygate has debug info
  perf       keygate runs normally; `perf record -e cpu-clock` samples it during the load
             (hardware counters are often unavailable in VMs; cpu-clock is a software event)
Writes results/profile-<scenario>-<tool>.txt. Every process is stopped by PID.
"""
import argparse
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import suite as S  # noqa: E402


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--keygate", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--tool", choices=("callgrind", "perf"), default="callgrind")
    p.add_argument("--seconds", type=int, default=15, help="measured load, at most 60")
    p.add_argument("--connections", type=int, default=10)
    p.add_argument("--out", default=os.path.join(S.BENCH, "results"))
    p.add_argument("--scenario", choices=("hot", "spread"), default="hot",
                   help="hot: 1,000 keys from the L1 cache; spread: 100,000 keys, no warm-up "
                        "(L1 misses: Redis, then PostgreSQL for keys Redis does not hold yet)")
    a = p.parse_args(argv)
    a.seconds = max(1, min(60, a.seconds))
    sargs = S.parse_args(["--keygate", a.keygate, "--workdir", a.workdir, "--quick",
                          "--keys", "110000", "--scenarios", a.scenario,
                          "--connections", str(a.connections)])
    os.sched_setaffinity(0, {sargs.client_cpu})
    suite = S.Suite(sargs)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    out_txt = os.path.join(a.out, f"profile-{a.scenario}-{a.tool}.txt")
    try:
        suite.start_stores()
        suite.migrate_and_load()
        up_port = S.free_port()
        upstream = S.Nginx(a.workdir, "upstream", S.UPSTREAM_BODY.format(port=up_port), up_port,
                           sargs.server_cpu, suite.procs).start()
        cg_out = os.path.join(a.workdir, "callgrind.out")
        wrapper = []
        if a.tool == "callgrind":
            wrapper = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                       f"--callgrind-out-file={cg_out}"]
        kg = S.Keygate(a.keygate, a.workdir, "keygate", cpu=sargs.server_cpu, procs=suite.procs,
                       mode="proxy", upstream=up_port, dsn=suite.dsn,
                       redis_url=suite.redis.url(),
                       usage=False if S.Suite.usage_option_exists() else None,
                       wrapper=wrapper).start(timeout=180)
        status, _ = S.http_get(kg.port, "/bench",
                               {"Authorization": f"Bearer {suite.sample_keys[a.scenario]}"},
                               timeout=30)
        if status != 200:
            raise RuntimeError(f"keygate answered {status} to a {a.scenario} key")
        if a.scenario == "hot":
            warm = 20 if a.tool == "callgrind" else 3
            S.log(f"warm-up {warm} s (fills the L1 cache with the 1,000 hot keys)")
            S.run_wrk(sargs, kg.port, suite.key_files["hot"], warm)
        perf = None
        if a.tool == "callgrind":
            subprocess.run(["callgrind_control", "-i", "on", str(kg.proc.pid)], check=True,
                           stdout=subprocess.DEVNULL)
        else:
            perf_data = os.path.join(a.workdir, "perf.data")
            perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "2000", "-g",
                                     "-o", perf_data, "-p", str(kg.proc.pid), "--",
                                     "sleep", str(a.seconds)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            suite.procs.add("perf", perf.pid, lambda: S.stores.stop_pid(perf.pid, signal.SIGINT))
        S.log(f"measuring {a.seconds} s of `{a.scenario}` load under {a.tool}")
        res, cmd = S.run_wrk(sargs, kg.port, suite.key_files[a.scenario], a.seconds)
        S.log(f"{res['requests']} requests, {res['requests'] / (res['duration_us'] / 1e6):.0f} "
              f"req/s, errors {res['errors']}")
        header = [f"# keygate `{a.scenario}` profile ({a.tool}), {res['requests']} requests measured",
                  f"# load: {cmd}", ""]
        if a.tool == "callgrind":
            # dump what the measured load cost (callgrind.out.1), before shutdown adds its own
            subprocess.run(["callgrind_control", "-d", str(kg.proc.pid)], check=True,
                           stdout=subprocess.DEVNULL)
            kg.stop(timeout=120)
            path = cg_out + ".1"
            if not os.path.exists(path):
                raise RuntimeError("callgrind wrote no dump")
            reports = []
            for inclusive in ("no", "yes"):
                r = subprocess.run(["callgrind_annotate", f"--inclusive={inclusive}",
                                    "--threshold=99", path],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
                reports.append(f"## callgrind_annotate --inclusive={inclusive}\n\n"
                               + "\n".join(r.stdout.decode(errors="replace").splitlines()[:120]))
            body = "\n\n".join(reports)
        else:
            perf.wait(timeout=a.seconds + 30)
            by_dso = subprocess.run(["perf", "report", "-i", perf_data, "--stdio", "--no-children",
                                     "--sort", "dso", "-g", "none"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
            r = subprocess.run(["perf", "report", "-i", perf_data, "--stdio", "--no-children",
                                "--sort", "dso,symbol", "-g", "none", "--percent-limit", "0.5"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
            r.stdout = by_dso.stdout + b"\n" + r.stdout
            # perf pads the symbol column to the longest C++ name: squeeze the blanks
            body = "\n".join(" ".join(line.split()) if not line.startswith("#") else line
                              for line in r.stdout.decode(errors="replace").splitlines()
                              if not line.startswith("# ....."))
        os.makedirs(a.out, exist_ok=True)
        with open(out_txt, "w") as f:
            f.write("\n".join(header) + body + "\n")
        S.log(f"wrote {out_txt}")
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        suite.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
