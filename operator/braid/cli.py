"""The `braid` command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from braid.text import printable

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
PR_TOKEN_ENV = "BRAID_PR_TOKEN"


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # GitPython logs every command line at debug; keep the noise down
    logging.getLogger("git").setLevel(logging.WARNING)


def _fail(message: str, code: int = EXIT_INVALID) -> int:
    print(f"braid: error: {printable(message, newlines=False)}", file=sys.stderr)
    return code


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


# -- braid run -----------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from braid.api import InvalidSpec, load_parallelrun
    from braid.local import InvalidRun, LocalOptions, LocalRun, RunLocked, render_summary

    logging.basicConfig(level=logging.WARNING, format="braid: %(message)s", stream=sys.stderr)
    logging.getLogger("git").setLevel(logging.WARNING)
    if args.cluster:
        return _fail("cluster mode is `kubectl apply -f FILE` with the operator installed (see README)")
    try:
        run = load_parallelrun(args.file)
    except InvalidSpec as exc:
        return _fail(str(exc))
    events = None
    if args.events:
        try:
            # `-`: the events on stdout, the human summary moves to stderr
            events = sys.stdout if args.events == "-" else open(args.events, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            return _fail(f"--events {args.events}: {exc.strerror}")
    options = LocalOptions(
        events=events,
        state_dir=_path(args.state_dir),
        cache_dir=_path(args.cache_dir),
        credentials_dir=_path(args.credentials_dir),
        api_key_file=_path(args.api_key_file),
        pr_token=_pr_token(args.pr_token_file),
        progress=False if args.no_progress else None,
        sandbox=args.sandbox,
        limits=args.limits,
        shared=[Path(p).expanduser().absolute() for p in args.share or []],
        keep_workdirs=args.keep_workdirs,
    )
    local = LocalRun(run, options)
    try:
        local.preflight()
    except InvalidRun as exc:
        return _fail(str(exc))
    try:
        status = local.execute()
    except RunLocked as exc:
        return _fail(str(exc), EXIT_FAILED)
    print(printable(render_summary(run, status)), file=sys.stderr if args.events == "-" else sys.stdout)
    _report_workdirs(local)
    if args.status_out:
        Path(args.status_out).write_text(json.dumps(status.wire(), indent=2) + "\n")
    return EXIT_OK if status.phase == "Succeeded" else EXIT_FAILED


def _report_workdirs(local) -> None:
    """Where the run's files are, and what became of its working copies."""
    work = local.state_dir / "work"
    tidy = local.workdirs
    if tidy is None:
        if local.status.phase == "Succeeded" or not work.is_dir():
            print(f"logs and status: {local.state_dir}", file=sys.stderr)
        else:
            print(f"logs, status and working copies (kept for inspection): {local.state_dir}; "
                  "`braid clean` removes the working copies once their work is pushed", file=sys.stderr)
        return
    removed = [c for c in tidy.copies if c.removed]
    kept = tidy.kept()
    print(f"logs and status: {local.state_dir}"
          + (f" (working copies removed: {len(removed)}; --keep-workdirs keeps them)" if removed else ""),
          file=sys.stderr)
    for copy in kept:
        print(printable(f"braid: kept working copy {work / copy.entry}: {copy.reason}", newlines=False),
              file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    from braid.api import InvalidSpec, load_parallelrun
    from braid.plan import PlanError, nodes_of, validate

    try:
        run = load_parallelrun(args.file)
        validate(nodes_of(run.spec.tasks))
    except (InvalidSpec, PlanError) as exc:
        return _fail(str(exc))
    print(f"{args.file}: ParallelRun {run.name} is valid ({len(run.spec.tasks)} tasks)")
    return EXIT_OK


# -- braid clean ---------------------------------------------------------------------------------


def cmd_clean(args: argparse.Namespace) -> int:
    from braid.gitops import default_cache_root, git_auth_env
    from braid.local.clean import clean, describe, human_size, purges_of, remove_run_leftovers, state_dirs
    from braid.local.control import runs_root

    cache_root = (_path(args.cache_dir) or default_cache_root()).absolute()
    purging: list[Path] = []
    if args.state_dir:
        if args.runs:
            return _fail("give RUN names or --state-dir, not both")
        state_dir = Path(args.state_dir).expanduser().absolute()
        if not state_dir.is_dir():
            return _fail(f"--state-dir {state_dir}: no such directory")
        dirs, where = [state_dir], str(state_dir)
        purging = purges_of(state_dir)
    else:
        root = runs_root(cache_root)
        dirs, purging = state_dirs(root)
        where = str(root)
    remove = args.yes
    if args.runs:
        named = {d: describe(d).name for d in dirs}
        unknown = [r for r in args.runs if not any(r in (d.name, n) for d, n in named.items())]
        if unknown:
            return _fail(f"no local run named {', '.join(unknown)} under {where} (`braid clean` lists them)")
        dirs = [d for d, n in named.items() if d.name in args.runs or n in args.runs]
    else:
        for path in purging:
            print(f"{'removed' if remove else 'would be removed (--yes)'}: {path} (left by an interrupted --purge)")
        if remove:
            remove_run_leftovers(purging)
    if not dirs:
        print(f"no local runs under {where}")
        return EXIT_OK
    auth = git_auth_env(_path(args.credentials_dir))
    refused = freed = 0
    for state_dir in dirs:
        state = clean(state_dir, cache_root, auth, remove=remove, forget=args.purge)
        lines, refusals = _clean_report(state, remove, args.purge)
        print(printable("\n".join(lines)))
        for refusal in refusals:
            print(printable(f"braid: refused: {refusal}", newlines=False), file=sys.stderr)
        refused += len(refusals)
        freed += state.size if state.purged else sum(c.size for c in state.copies if c.removed)
    if remove:
        print(f"freed {human_size(freed)}")
    return EXIT_FAILED if refused else EXIT_OK


def _clean_report(state, remove: bool, purge: bool) -> tuple[list[str], list[str]]:
    """The lines `braid clean` prints for one run, and one line per refusal (with --yes)."""
    from braid.local.clean import human_size

    lines = [f"run {state.name}: {state.ended}, phase {state.phase or '-'}, {human_size(state.size)}, "
             f"repository {state.repository or '(unknown)'}",
             f"  state dir {state.path}"]
    refusals = []
    if state.holder:
        lines.append("  working copies not looked at while it runs")
        if remove:
            refusals.append(f"run {state.name}: {state.ended} ({state.path})")
        return lines, refusals
    if state.problem and not any(c.reason == state.problem for c in state.copies):
        lines.append(f"  {state.problem}")
        if remove:
            refusals.append(f"run {state.name}: {state.problem}")
    if not state.copies:
        lines.append("  no working copies")
    for copy in state.copies:
        if copy.removed:
            done = "removed"
        elif copy.pushed:
            done = "would be removed (--yes)"
        else:
            done = f"kept: {copy.reason}"
            if remove:
                refusals.append(f"run {state.name}, task {copy.task} (work/{copy.entry}): {copy.reason}")
        lines.append(f"  task {copy.task}: work/{copy.entry}  {'pushed' if copy.pushed else 'NOT pushed'}  "
                     f"{human_size(copy.size)}  {done}")
    if purge:
        if state.purged:
            lines.append("  state dir removed (--purge)")
        elif not remove and not state.kept() and not state.problem:
            lines.append("  state dir would be removed (--yes --purge)")
        else:
            lines.append("  state dir kept (--purge): " + ("a working copy is kept" if state.kept() else
                                                           state.problem or "it is a symbolic link"))
            if remove and not refusals:
                refusals.append(f"run {state.name}: state dir {state.path} kept: it is a symbolic link")
    return lines, refusals


# -- braid status / logs / cancel (a run in progress, from another terminal) ----------------------------


def _local_run(args: argparse.Namespace):
    from braid.gitops import default_cache_root
    from braid.local.control import resolve

    cache_root = (_path(args.cache_dir) or default_cache_root()).absolute()
    return resolve(args.run, _path(args.state_dir), cache_root)


def _cluster(args: argparse.Namespace):
    from braid.controller.inspect import Cluster

    return Cluster(args.namespace)


def _inspect_errors(args: argparse.Namespace) -> tuple[type[Exception], ...]:
    """What status and logs report as an error (the kubernetes client is loaded only for --cluster)."""
    from braid.local.control import NoSuchRun

    if not args.cluster:
        return (NoSuchRun,)
    from braid.controller.inspect import ClusterError

    return NoSuchRun, ClusterError


def cmd_status(args: argparse.Namespace) -> int:
    from braid.local import render_summary

    try:
        if args.cluster:
            run = _cluster(args).run(args.run)
            status, where = run.status, f"namespace {run.metadata.namespace}"
        else:
            found = _local_run(args)
            run, status = found.run, found.status
            holder = found.holder
            where = f"running (braid run pid {holder})" if holder is not None else "not running"
            where += f"; state in {found.path}"
    except _inspect_errors(args) as exc:
        return _fail(str(exc), EXIT_FAILED)
    if run is None or status is None:
        return _fail(f"run {args.run!r} has no status yet", EXIT_FAILED)
    if args.output == "json":
        print(json.dumps(status.wire(), indent=2))
    else:
        print(f"run {run.name}: {status.phase}, {where}")
        print(printable(render_summary(run, status)))
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    import codecs

    from braid.local.control import follow

    try:
        if args.cluster:
            chunks = _cluster(args).logs(args.run, args.task, follow=args.follow)
        else:
            found = _local_run(args)
            if found.run is not None and args.task not in {t.name for t in found.run.spec.tasks}:
                return _fail(f"run {args.run!r} has no task {args.task!r}", EXIT_FAILED)
            chunks = follow(found, args.task, args.attempt, follow=args.follow)
        shown = None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for attempt, chunk in chunks:
            if attempt != shown:
                if shown is not None:
                    sys.stdout.write(decoder.decode(b"", final=True))
                decoder.reset()
                print(f"==> {args.task}, attempt {attempt} <==", flush=True)
                shown = attempt
            # what an agent wrote may hold escape sequences: shown, not obeyed
            sys.stdout.write(printable(decoder.decode(chunk)))
            sys.stdout.flush()
        sys.stdout.write(decoder.decode(b"", final=True))
    except _inspect_errors(args) as exc:
        return _fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        return EXIT_OK
    if shown is None:
        print(f"task {args.task} has no log yet", file=sys.stderr)
    return EXIT_OK


def _cancel_on_cluster(args: argparse.Namespace) -> int:
    import time

    from braid.controller.inspect import ClusterError
    from braid.plan import FINAL_RUN_PHASES

    try:
        cluster = _cluster(args)
        cluster.cancel(args.run)
        print(f"cancel requested: ParallelRun {cluster.namespace}/{args.run} stops its agents "
              "(their work is pushed)", file=sys.stderr)
        deadline = time.monotonic() + args.wait
        while True:
            status = cluster.run(args.run).status
            phase = status.phase if status is not None else "Pending"
            if phase in FINAL_RUN_PHASES:
                break
            if time.monotonic() > deadline:
                return _fail(f"run {args.run!r} is {phase} after {args.wait:g}s; it goes on stopping", EXIT_FAILED)
            time.sleep(1.0)
    except ClusterError as exc:
        return _fail(str(exc), EXIT_FAILED)
    print(f"run {args.run}: {phase}")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    import time

    from braid.local.control import NoSuchRun, request_cancel

    if args.cluster:
        return _cancel_on_cluster(args)
    try:
        found = _local_run(args)
    except NoSuchRun as exc:
        return _fail(str(exc), EXIT_FAILED)
    if found.holder is None:
        return _fail(f"run {args.run!r} is not running ({found.path})", EXIT_FAILED)
    request_cancel(found)
    print(f"cancel requested: run {args.run} stops its agents (their work is pushed)", file=sys.stderr)
    deadline = time.monotonic() + args.wait
    while found.holder is not None:
        if time.monotonic() > deadline:
            return _fail(f"run {args.run!r} still running after {args.wait:g}s; it goes on stopping", EXIT_FAILED)
        time.sleep(0.2)
    status = found.status
    print(f"run {args.run}: {status.phase if status else 'unknown'}")
    return EXIT_OK


# -- braid agent-run / merge (the pod entrypoints) -------------------------------------------------


def _read_input(model: type, file: str | None, env_var: str, what: str):
    """An entrypoint's JSON input from --<what> FILE or $env_var; InvalidSpec names the bad field."""
    from pydantic import ValidationError

    from braid.api import InvalidSpec, format_validation_error

    try:
        text = Path(file).read_text() if file else os.environ.get(env_var)
    except OSError as exc:
        raise InvalidSpec(f"--{what} {file}: {exc.strerror}") from None
    if not text:
        raise InvalidSpec(f"give --{what} FILE or set {env_var}")
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise InvalidSpec(format_validation_error(exc, what)) from None


def cmd_agent_run(args: argparse.Namespace) -> int:
    from braid.api import AgentTaskSpec, InvalidSpec
    from braid.confine import Placement
    from braid.runner import RunnerPaths, install_cancel_handlers, run_task

    _setup_logging(args.verbose)
    try:
        spec = _read_input(AgentTaskSpec, args.task, "BRAID_TASK_SPEC", "task")
    except InvalidSpec as exc:
        return _fail(str(exc))
    cancel = install_cancel_handlers()
    api_key = args.api_key_file or os.environ.get("BRAID_API_KEY_FILE")
    paths = RunnerPaths(
        workdir=Path(args.workdir).absolute(),
        cache_dir=Path(args.cache_dir).absolute(),
        credentials_dir=_path(args.credentials_dir or os.environ.get("BRAID_GIT_CREDENTIALS_DIR")),
        api_key_file=_path(api_key) if api_key and Path(api_key).exists() else None,
        # the launcher writes the key on stdin, so it is in no file, argument or environment
        api_key=sys.stdin.readline().strip() if args.api_key_stdin else None,
        sandbox=args.sandbox == "bwrap",
        hidden=[Path(p).absolute() for p in args.hide or []],
        shared=[Path(p).absolute() for p in args.share or []],
        placement=Placement(tuple(Path(p) for p in args.agent_cgroup or []), args.agent_rlimit_as),
    )
    if args.phase == "all":
        result = run_task(spec, paths, cancel)
    else:
        from braid.runner.phases import agent_phase, prepare_phase, publish_phase

        state, handoff = Path(args.state), Path(args.handoff)
        if args.phase == "prepare":
            # a failure is recorded for the publish step to report: this container succeeds so the pod goes on
            prepare_phase(spec, paths, state, handoff)
            return EXIT_OK
        if args.phase == "agent":
            # how the agent did is the publish step's to report
            agent_phase(spec, paths.workdir, handoff, cancel)
            return EXIT_OK
        host, _, port = args.model_proxy_listen.rpartition(":")
        result = publish_phase(spec, paths, state, handoff, cancel, (host, int(port)))
    text = result.compact_json()
    if args.result:
        Path(args.result).write_text(text)
    print(text)
    return EXIT_OK if result.phase == "Succeeded" else EXIT_FAILED


def _pr_token(path: str | None) -> str | None:
    """spec.delivery.pullRequest's token: from the file, else $BRAID_PR_TOKEN, which is then dropped from
    braid's environment so that no process it starts (git, agents, verify) inherits it."""
    from_env = os.environ.pop(PR_TOKEN_ENV, None)
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError as exc:
            raise SystemExit(f"braid: --pr-token-file: {exc.strerror}: {path}") from None
    return (from_env or "").strip() or None


def cmd_merge(args: argparse.Namespace) -> int:
    from braid.api import InvalidSpec, MergeRequest
    from braid.gitops import ObjectCache, git_auth_env
    from braid.gitops.secrets import Secrets, credential_files
    from braid.merge import HandoffVerifier, run_merge
    from braid.runner import TERMINATION_MESSAGE_LIMIT

    _setup_logging(args.verbose)
    try:
        request = _read_input(MergeRequest, args.request, "BRAID_MERGE_REQUEST", "request")
    except InvalidSpec as exc:
        return _fail(str(exc))
    creds = _path(args.credentials_dir or os.environ.get("BRAID_GIT_CREDENTIALS_DIR"))
    pr_token = _pr_token(args.pr_token_file)
    secrets = Secrets.from_files(credential_files(creds)).merged(Secrets.of({"pull request token": pr_token}))
    verifier = _merge_verifier(args, creds) if request.verify is not None else None
    try:
        status = run_merge(request, ObjectCache(Path(args.cache_dir)), git_auth_env(creds), verifier, secrets.redact,
                           pr_token)
    finally:
        if isinstance(verifier, HandoffVerifier):
            verifier.finish()
    text = json.dumps(status.wire(), separators=(",", ":"))
    if args.report:
        Path(args.report).write_text(text)
    if len(text.encode()) > TERMINATION_MESSAGE_LIMIT and os.environ.get("BRAID_MERGE_REPORT_CONFIGMAP"):
        # in a merge Job: the whole report goes where the operator can read it
        from braid.controller.report import publish_merge_report

        publish_merge_report(text)
    print(text)
    return EXIT_OK if status.phase in ("Succeeded", "Conflicted") else EXIT_FAILED


def _merge_verifier(args: argparse.Namespace, creds: Path | None):
    """In the merge Job, the verify container runs spec.merge.verify; elsewhere this process does,
    in the sandbox when there is one."""
    import tempfile

    from braid.confine import SandboxUnavailable, find_sandbox
    from braid.merge import HandoffVerifier, LocalVerifier

    if args.verify_handoff:
        return HandoffVerifier(Path(args.verify_handoff))
    try:
        bwrap: str | None = find_sandbox()
    except SandboxUnavailable as exc:
        logging.getLogger("braid.merge").warning("spec.merge.verify runs without a sandbox: %s", exc)
        bwrap = None
    hidden = [Path.home(), Path(args.cache_dir).absolute(), *([creds] if creds else [])]
    return LocalVerifier(Path(tempfile.mkdtemp(prefix="braid-verify-")), bwrap, tuple(hidden))


def cmd_verify_serve(args: argparse.Namespace) -> int:
    import signal

    from braid.merge import serve

    _setup_logging(args.verbose)

    def stop(_signum: int, _frame: object) -> None:
        raise SystemExit(EXIT_OK)

    # a sidecar: the kubelet stops it once the merge container has ended; exiting earlier would restart it
    signal.signal(signal.SIGTERM, stop)
    serve(Path(args.handoff))
    while True:
        signal.pause()


# -- braid demo / crds ---------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from braid.local.demo import run_demo

    logging.basicConfig(level=logging.WARNING, format="braid: %(message)s", stream=sys.stderr)

    return run_demo(_path(args.dir), progress=False if args.no_progress else None)


def cmd_crds(args: argparse.Namespace) -> int:
    from braid.api.crd import render_all

    out = Path(args.out)
    stale = []
    for name, text in render_all().items():
        path = out / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(path)
    if stale:
        return _fail(f"out of date (run `braid crds --out {out}`): {', '.join(stale)}", EXIT_FAILED)
    return EXIT_OK


def cmd_operator(args: argparse.Namespace) -> int:
    from braid.controller.main import run_operator

    return run_operator(args)


def _state_options(p: argparse.ArgumentParser) -> None:
    """Where local runs keep their state, the same for `braid run` and `braid clean`."""
    p.add_argument("--state-dir", metavar="DIR",
                   help="one run's logs, working copies and status (default: <cache dir>/../runs/<run>-<hash>)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="git object cache (default ~/.cache/braid/git, or $BRAID_CACHE_DIR/git); runs live next to it")
    p.add_argument("--credentials-dir", metavar="DIR", help="git credentials: username+password or ssh-privatekey")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="braid", description="Run coding agents in parallel, one branch each.")
    p.add_argument("--version", action="version", version=f"braid {__import__('braid').__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a ParallelRun on this machine")
    r.add_argument("file", help="ParallelRun YAML")
    mode = r.add_mutually_exclusive_group()
    mode.add_argument("--local", action="store_true", help="run here with git worktrees and processes (default)")
    mode.add_argument("--cluster", action="store_true", help=argparse.SUPPRESS)
    r.add_argument("--status-out", metavar="PATH", help="write the final status (ParallelRun .status) as JSON")
    _state_options(r)
    r.add_argument("--api-key-file", metavar="FILE", help="file holding the Anthropic API key")
    r.add_argument("--pr-token-file", metavar="FILE", help="file holding the forge's API token for "
                   f"spec.delivery.pullRequest (default: ${PR_TOKEN_ENV})")
    r.add_argument("--no-progress", action="store_true", help="plain lines instead of the live table")
    r.add_argument("--events", metavar="FILE", help="append one JSON line per event to FILE (`-`: stdout); "
                   "schema in docs/events.md")
    r.add_argument("--sandbox", choices=("auto", "bwrap", "none"), default="auto",
                   help="confine agents with bubblewrap: auto (when it works here, loudly without), "
                        "bwrap (required), none (unconfined)")
    r.add_argument("--share", action="append", metavar="DIR",
                   help="a directory every sandboxed agent may read and write, e.g. a package cache (repeatable)")
    r.add_argument("--keep-workdirs", action="store_true",
                   help="keep the working copies of a run that succeeds (one that does not keeps them anyway)")
    r.add_argument("--limits", choices=("auto", "cgroup", "rlimit"), default="auto",
                   help="hold agents to their resources.limits: auto (a cgroup per attempt where cgroups work, "
                        "else RLIMIT_AS for memory, loudly), cgroup (required), rlimit (never cgroups)")
    r.set_defaults(func=cmd_run)

    k = sub.add_parser("clean", help="list local runs and their working copies; --yes removes those whose work is pushed",
                       description="List the state directories of local runs: phase, size, and for each working "
                                   "copy whether all its work is on the remote (fetched to check). Nothing is "
                                   "removed without --yes. A working copy is never removed while its run or agent "
                                   "is live, or when it holds uncommitted changes, a stash or commits that no "
                                   "branch of the remote holds; each refusal is one line and makes the exit code 1.")
    k.add_argument("runs", nargs="*", metavar="RUN", help="only these runs (metadata.name, or the state dir's name)")
    k.add_argument("-y", "--yes", action="store_true", help="remove the working copies whose work is pushed")
    k.add_argument("--purge", action="store_true",
                   help="with --yes: also remove the run's status, records and logs once no working copy is "
                        "kept (braid forgets what it pushed: the same file then fails on its existing branches)")
    _state_options(k)
    k.set_defaults(func=cmd_clean)

    def where(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("run", metavar="RUN", help="the run's name (metadata.name)")
        sp.add_argument("--state-dir", metavar="DIR", help="the state directory `braid run --state-dir` was given")
        sp.add_argument("--cache-dir", metavar="DIR", help="the cache dir `braid run --cache-dir` was given")
        sp.add_argument("--cluster", action="store_true", help="a ParallelRun on the cluster of the kubeconfig")
        sp.add_argument("-n", "--namespace", help="(--cluster) default: the kubeconfig context's")

    st = sub.add_parser("status", help="the status of a run, running or ended")
    where(st)
    st.add_argument("-o", "--output", choices=("table", "json"), default="table")
    st.set_defaults(func=cmd_status)

    lg = sub.add_parser("logs", help="the log of a task's latest attempt")
    where(lg)
    lg.add_argument("task", metavar="TASK")
    lg.add_argument("-f", "--follow", action="store_true", help="follow it, and each next attempt, until the task ends")
    lg.add_argument("--attempt", type=int, metavar="N", help="(local) attempt N instead of the latest")
    lg.set_defaults(func=cmd_logs)

    cn = sub.add_parser("cancel", help="stop a run in progress: agents stop, their work is pushed, it ends Cancelled")
    where(cn)
    cn.add_argument("--wait", type=float, default=120.0, metavar="SECONDS", help="how long to wait for it to end")
    cn.set_defaults(func=cmd_cancel)

    v = sub.add_parser("validate", help="check a ParallelRun file without running it")
    v.add_argument("file")
    v.set_defaults(func=cmd_validate)

    a = sub.add_parser("agent-run", help="run one task: workspace, agent, commit, push, result (pod entrypoint)")
    a.add_argument("--task", metavar="FILE", help="AgentTask spec as JSON (default: $BRAID_TASK_SPEC)")
    a.add_argument("--workdir", default="/workspace/repo")
    a.add_argument("--cache-dir", default="/cache/git")
    a.add_argument("--result", metavar="PATH", help="also write the result JSON here (e.g. /dev/termination-log)")
    a.add_argument("--credentials-dir", metavar="DIR")
    a.add_argument("--api-key-file", metavar="FILE")
    a.add_argument("--api-key-stdin", action="store_true", help="read the API key from the first line of stdin")
    a.add_argument("--sandbox", choices=("bwrap", "none"), default="none",
                   help="run the agent's processes in a bubblewrap sandbox (local mode)")
    a.add_argument("--hide", action="append", metavar="PATH", help="a path the sandbox hides (repeatable)")
    a.add_argument("--share", action="append", metavar="DIR", help="a directory the sandbox lets the agent write")
    a.add_argument("--agent-cgroup", action="append", metavar="DIR",
                   help="(local) a cgroup the agent's processes join before they run (repeatable: one per hierarchy)")
    a.add_argument("--agent-rlimit-as", type=int, metavar="BYTES",
                   help="(local) RLIMIT_AS of each of the agent's processes, where no cgroup holds its memory")
    a.add_argument("--phase", choices=("all", "prepare", "agent", "publish"), default="all",
                   help="the whole task (default), or one of the three containers of an agent pod")
    a.add_argument("--state", default="/braid", help="(pod) braid's own state between prepare and publish")
    a.add_argument("--handoff", default="/handoff", help="(pod) where the agent container leaves its outcome")
    a.add_argument("--model-proxy-listen", default="127.0.0.1:8181", metavar="HOST:PORT",
                   help="(pod, publish) where the key-injecting model proxy listens")
    a.add_argument("-v", "--verbose", action="store_true")
    a.set_defaults(func=cmd_agent_run)

    m = sub.add_parser("merge", help="integrate task branches and report conflicts (merge Job entrypoint)")
    m.add_argument("--request", metavar="FILE", help="merge request JSON (default: $BRAID_MERGE_REQUEST)")
    m.add_argument("--cache-dir", default="/cache/git")
    m.add_argument("--report", metavar="PATH", help="also write the report JSON here")
    m.add_argument("--credentials-dir", metavar="DIR")
    m.add_argument("--pr-token-file", metavar="FILE", help="the forge's API token for spec.delivery.pullRequest")
    m.add_argument("--verify-handoff", metavar="DIR",
                   help="(merge Job) hand spec.merge.verify runs to `braid verify-serve` through DIR")
    m.add_argument("-v", "--verbose", action="store_true")
    m.set_defaults(func=cmd_merge)

    vs = sub.add_parser("verify-serve", help="run the verify commands a merge hands over (merge Job's verify container)")
    vs.add_argument("--handoff", default="/verify", metavar="DIR")
    vs.add_argument("-v", "--verbose", action="store_true")
    vs.set_defaults(func=cmd_verify_serve)

    d = sub.add_parser("demo", help="make a throw-away repository and run a six-task demo on it")
    d.add_argument("--dir", help="where to put the demo repository (default: a new temp dir)")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser("crds", help="write (or --check) the CRD YAML generated from the API models")
    c.add_argument("--out", default="crds")
    c.add_argument("--check", action="store_true")
    c.set_defaults(func=cmd_crds)

    o = sub.add_parser("operator", help="run the Kubernetes operator")
    o.add_argument("--namespace", action="append", help="watch only these namespaces (repeatable)")
    o.add_argument("-v", "--verbose", action="store_true")
    o.set_defaults(func=cmd_operator)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
