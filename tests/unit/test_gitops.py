"""Git operations on real repositories: object cache, workspaces, task branches, leased pushes, credentials."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from braid.gitops import (
    BranchExists,
    BranchMoved,
    DependencyConflict,
    MissingRef,
    ObjectCache,
    Repo,
    RepositoryUnreachable,
    changed_files,
    commit_all,
    git_auth_env,
    normalize_url,
    open_workspace,
    prepare_branch,
    push_branch,
    reset_git_dir,
    resolve_base,
)
from gitrepos import GIT_ENV, GitRepo, make_repo, pack_files

RUN = "r1"


def tb(task: str) -> str:
    return f"braid/{RUN}/tasks/{task}"


@pytest.fixture
def origin(tmp_path) -> GitRepo:
    return make_repo(tmp_path / "origin", {"README.md": "# app\n", "app.py": "x = 1\n"})


@pytest.fixture
def cache(tmp_path) -> ObjectCache:
    return ObjectCache(tmp_path / "cache")


def workspace(tmp_path: Path, cache: ObjectCache, origin: GitRepo, name: str = "ws") -> Repo:
    url = str(origin.path)
    return open_workspace(tmp_path / name, cache.update(url), url)


def object_files(git_dir: Path) -> dict[Path, int]:
    """Every object/pack file under git_dir/objects with its inode."""
    return {p: p.stat().st_ino for p in (git_dir / "objects").rglob("*") if p.is_file() and "info" not in p.parts}


def count_objects(git_dir: Path) -> int:
    out = subprocess.run(["git", "--git-dir", str(git_dir), "count-objects", "-v"], capture_output=True, text=True,
                         check=True).stdout
    fields = dict(line.split(": ") for line in out.splitlines())
    return int(fields["count"]) + int(fields["in-pack"])


# -- the object cache -------------------------------------------------------------------------------------


def test_cache_update_mirrors_branches_and_tags(origin, cache):
    origin.commit({"a.txt": "a\n"}, "a", branch=tb("a"))
    origin.git("tag", "v1", "main")
    repo = cache.update(str(origin.path))
    mirror = GitRepo(repo.path)
    assert mirror.branches() == origin.branches()
    assert mirror.rev("refs/tags/v1") == origin.rev("main")
    assert (repo.path / "HEAD").exists() and not (repo.path / ".git").exists(), "the cache is a bare repository"


def test_second_update_is_incremental(origin, cache):
    url = str(origin.path)
    first = cache.update(url)
    before_files = object_files(first.path)
    before_count = count_objects(first.path)
    assert before_files

    new = origin.commit({"new.txt": "new\n"}, "one more file")
    second = cache.update(url)

    assert second.path == first.path
    assert GitRepo(second.path).rev("main") == new
    after_files = object_files(second.path)
    # nothing fetched before was fetched again or rewritten
    for path, inode in before_files.items():
        assert after_files.get(path) == inode, f"{path} was replaced"
    # exactly the new commit, its tree and its one new blob arrived
    assert count_objects(second.path) == before_count + 3


def test_update_prunes_deleted_branches(origin, cache):
    url = str(origin.path)
    origin.branch("gone")
    assert GitRepo(cache.update(url).path).rev("refs/heads/gone")
    origin.git("branch", "-D", "gone")
    assert GitRepo(cache.update(url).path).rev("refs/heads/gone") is None


def test_one_cache_per_url(tmp_path, origin, cache):
    other = make_repo(tmp_path / "other", {"other.txt": "o\n"})
    a = cache.update(str(origin.path))
    b = cache.update(str(other.path))
    again = cache.update(str(origin.path))
    assert a.path != b.path
    assert again.path == a.path
    assert sorted(p.name for p in cache.root.glob("*.git")) == sorted([a.path.name, b.path.name])
    assert GitRepo(b.path).show("main", "other.txt") == "o\n"
    assert GitRepo(a.path).show("main", "other.txt") is None


def test_unreachable_repository(tmp_path, cache):
    with pytest.raises(RepositoryUnreachable) as info:
        cache.update(str(tmp_path / "does-not-exist"))
    message = str(info.value)
    assert "\n" not in message and "does-not-exist" in message


def test_normalize_url():
    assert normalize_url("https://git.example.com/app.git") == "https://git.example.com/app.git"
    assert normalize_url("git@github.com:org/app.git") == "git@github.com:org/app.git"
    assert normalize_url("file:///srv/app.git") == "file:///srv/app.git"
    assert normalize_url("./repo") == str(Path("./repo").resolve())
    assert os.path.isabs(normalize_url("repo"))


# -- workspaces -----------------------------------------------------------------------------------------


def test_workspace_borrows_objects_through_alternates(tmp_path, origin, cache):
    origin.commit({f"f{i}.txt": f"{i}\n" * 100 for i in range(20)}, "many files")
    url = str(origin.path)
    cached = cache.update(url)
    ws = open_workspace(tmp_path / "ws", cached, url)
    git_dir = tmp_path / "ws" / ".git"
    alternates = (git_dir / "objects" / "info" / "alternates").read_text().split()
    assert [Path(p).resolve() for p in alternates] == [(cached.path / "objects").resolve()]
    assert pack_files(git_dir) == [], "objects were copied into the workspace"
    assert GitRepo(tmp_path / "ws").git("remote", "get-url", "origin") == url
    assert ws.rev("refs/remotes/origin/main") == origin.rev("main")
    # and the objects are usable
    assert ws.out("show", "refs/remotes/origin/main:f3.txt").startswith("3")


def test_workspace_is_recreated_from_scratch(tmp_path, origin, cache):
    ws = workspace(tmp_path, cache, origin)
    (ws.path / "leftover.txt").write_text("old run\n")
    ws = workspace(tmp_path, cache, origin)
    assert not (ws.path / "leftover.txt").exists()


def test_resolve_base_branch_tag_commit_and_missing(tmp_path, origin, cache):
    first = origin.rev("main")
    origin.git("tag", "v1")
    later = origin.commit({"later.txt": "l\n"}, "later")
    ws = workspace(tmp_path, cache, origin)
    assert resolve_base(ws, "main") == later
    assert resolve_base(ws, "v1") == first
    assert resolve_base(ws, first) == first
    with pytest.raises(MissingRef, match="repo.baseRef"):
        resolve_base(ws, "no-such-branch")


# -- task branches ----------------------------------------------------------------------------------------


def test_new_branch_starts_from_base_ref(tmp_path, origin, cache):
    ws = workspace(tmp_path, cache, origin)
    prepared = prepare_branch(ws, tb("a"), "main", [])
    assert prepared.start == origin.rev("main")
    assert prepared.lease == "" and not prepared.resumed and prepared.merged_dependencies == []
    assert GitRepo(ws.path).current_branch() == tb("a")


def test_branch_carries_every_dependency(tmp_path, origin, cache):
    origin.commit({"db/schema.sql": "CREATE TABLE users;\n"}, "schema", branch=tb("schema"))
    origin.commit({"docs/intro.md": "intro\n"}, "intro", branch=tb("intro"))
    ws = workspace(tmp_path, cache, origin)
    prepared = prepare_branch(ws, tb("api"), "main", [tb("schema"), tb("intro")])
    assert prepared.merged_dependencies == [tb("schema"), tb("intro")]
    assert (ws.path / "db/schema.sql").read_text() == "CREATE TABLE users;\n"
    assert (ws.path / "docs/intro.md").read_text() == "intro\n"
    assert (ws.path / "app.py").read_text() == "x = 1\n"
    head = GitRepo(ws.path)
    for dep in ("schema", "intro"):
        assert head.is_ancestor(origin.rev(tb(dep)), "HEAD")
    assert head.is_ancestor(origin.rev("main"), "HEAD")
    assert prepared.start == head.rev("HEAD")
    assert head.git("status", "--porcelain") == ""


def test_dependency_already_contained_is_not_merged_again(tmp_path, origin, cache):
    origin.commit({"a.txt": "a\n"}, "a", branch=tb("a"))
    origin.checkout(tb("a"))
    origin.commit({"b.txt": "b\n"}, "b on top of a", branch=tb("b"))  # created from a's tip
    origin.checkout("main")
    ws = workspace(tmp_path, cache, origin)
    prepared = prepare_branch(ws, tb("c"), "main", [tb("b"), tb("a")])
    assert prepared.merged_dependencies == [tb("b")]
    assert (ws.path / "a.txt").exists() and (ws.path / "b.txt").exists()


def test_conflicting_dependencies_raise_dependency_conflict(tmp_path, origin, cache):
    origin.commit({"app.py": "x = 2\n", "a.txt": "a\n"}, "a", branch=tb("a"))
    origin.checkout("main")
    origin.commit({"app.py": "x = 3\n", "b.txt": "b\n"}, "b", branch=tb("b"))
    ws = workspace(tmp_path, cache, origin)
    with pytest.raises(DependencyConflict) as info:
        prepare_branch(ws, tb("c"), "main", [tb("a"), tb("b")])
    assert info.value.files == ["app.py"]
    assert info.value.dependency == tb("b")
    assert "app.py" in str(info.value) and tb("b") in str(info.value)
    # the failed merge was aborted: no half-merged work tree left behind
    assert GitRepo(ws.path).git("status", "--porcelain") == ""


def test_missing_dependency_branch(tmp_path, origin, cache):
    ws = workspace(tmp_path, cache, origin)
    with pytest.raises(MissingRef, match=tb("ghost")):
        prepare_branch(ws, tb("c"), "main", [tb("ghost")])


def test_pushed_branch_is_resumed(tmp_path, origin, cache):
    ws = workspace(tmp_path, cache, origin)
    first = prepare_branch(ws, tb("a"), "main", [])
    (ws.path / "half.txt").write_text("half done\n")
    assert commit_all(ws, "a\n\npartial").made
    pushed = push_branch(ws, tb("a"), first.lease)
    assert origin.rev(tb("a")) == pushed

    # the retry: a fresh workspace picks up the pushed work braid recorded
    ws2 = workspace(tmp_path, cache, origin, "ws2")
    again = prepare_branch(ws2, tb("a"), "main", [], last_pushed=pushed)
    assert again.resumed and again.lease == pushed and again.start == pushed
    assert (ws2.path / "half.txt").read_text() == "half done\n"
    (ws2.path / "rest.txt").write_text("rest\n")
    assert commit_all(ws2, "a\n\nthe rest").made
    assert push_branch(ws2, tb("a"), again.lease) == origin.rev(tb("a"))
    assert origin.show(tb("a"), "half.txt") == "half done\n"
    assert origin.show(tb("a"), "rest.txt") == "rest\n"


def test_resumed_branch_picks_up_a_dependency_that_moved(tmp_path, origin, cache):
    origin.commit({"a.txt": "a1\n"}, "a", branch=tb("a"))
    ws = workspace(tmp_path, cache, origin)
    p = prepare_branch(ws, tb("b"), "main", [tb("a")])
    pushed = push_branch(ws, tb("b"), p.lease)
    origin.commit({"a.txt": "a2\n"}, "a again", branch=tb("a"))
    ws2 = workspace(tmp_path, cache, origin, "ws2")
    again = prepare_branch(ws2, tb("b"), "main", [tb("a")], last_pushed=pushed)
    assert again.resumed and again.merged_dependencies == [tb("a")]
    assert (ws2.path / "a.txt").read_text() == "a2\n"


def test_a_branch_braid_did_not_push_is_not_adopted(tmp_path, origin, cache):
    # someone made the task branch before the run: braid has no record of pushing it
    theirs = origin.commit({"theirs.txt": "not braid's\n"}, "their work", branch=tb("a"))
    ws = workspace(tmp_path, cache, origin)
    with pytest.raises(BranchExists) as info:
        prepare_branch(ws, tb("a"), "main", [])
    said = str(info.value)
    assert tb("a") in said and theirs[:12] in said and "delete the branch" in said
    assert origin.rev(tb("a")) == theirs


def test_a_branch_that_moved_away_from_what_braid_pushed_is_not_adopted(tmp_path, origin, cache):
    ws = workspace(tmp_path, cache, origin)
    first = prepare_branch(ws, tb("a"), "main", [])
    (ws.path / "mine.txt").write_text("mine\n")
    commit_all(ws, "a")
    pushed = push_branch(ws, tb("a"), first.lease)
    # a commit on top of braid's, or braid's own commit rewritten: either is not what braid pushed
    on_top = origin.commit({"theirs.txt": "t\n"}, "on top", branch=tb("a"))
    ws2 = workspace(tmp_path, cache, origin, "ws2")
    with pytest.raises(BranchExists) as info:
        prepare_branch(ws2, tb("a"), "main", [], last_pushed=pushed)
    assert on_top[:12] in str(info.value) and pushed[:12] in str(info.value)
    assert origin.rev(tb("a")) == on_top


def test_a_recorded_branch_that_was_deleted_starts_again_from_the_base(tmp_path, origin, cache):
    ws = workspace(tmp_path, cache, origin)
    prepare_branch(ws, tb("a"), "main", [])
    (ws.path / "mine.txt").write_text("mine\n")
    commit_all(ws, "a")
    pushed = push_branch(ws, tb("a"), "")
    origin.git("branch", "-D", tb("a"))
    again = prepare_branch(workspace(tmp_path, cache, origin, "ws2"), tb("a"), "main", [], last_pushed=pushed)
    assert not again.resumed and again.lease == "" and again.start == origin.rev("main")


# -- commits and pushes -------------------------------------------------------------------------------------


def test_commit_all_stages_additions_changes_and_deletions(tmp_path, origin, cache):
    ws = workspace(tmp_path, cache, origin)
    start = prepare_branch(ws, tb("a"), "main", []).start
    assert commit_all(ws, "nothing").made is False
    (ws.path / "new" / "deep").mkdir(parents=True)
    (ws.path / "new/deep/file.txt").write_text("n\n")
    (ws.path / "app.py").write_text("x = 42\n")
    (ws.path / "README.md").unlink()
    assert commit_all(ws, "a\n\nbody line\n").made is True
    repo = GitRepo(ws.path)
    assert repo.message("HEAD").splitlines()[0] == "a"
    assert repo.parents("HEAD") == [start]
    assert sorted(changed_files(ws, start)) == ["README.md", "app.py", "new/deep/file.txt"]
    author = repo.git("log", "-1", "--format=%an <%ae>")
    assert author == "braid <braid@localhost>"


def plant(ws: Repo, flags: Path) -> list[str]:
    """What an agent could leave under .git for braid's git to run: each program touches a flag file."""
    flags.mkdir()
    names = []

    def program(name: str) -> str:
        path = flags.parent / f"{name}.sh"
        path.write_text(f"#!/bin/sh\ntouch {flags / name}\ncat\n")
        path.chmod(0o755)
        names.append(name)
        return str(path)

    hooks = ws.path / ".git/hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    for hook in ("pre-commit", "prepare-commit-msg", "commit-msg", "post-commit", "pre-push", "reference-transaction",
                 "post-index-change", "pre-auto-gc"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {flags / hook}\n")
        (hooks / hook).chmod(0o755)
        names.append(hook)
    other_hooks = flags.parent / "other-hooks"
    other_hooks.mkdir()
    (other_hooks / "pre-commit").write_text(f"#!/bin/sh\ntouch {flags / 'hooksPath'}\n")
    (other_hooks / "pre-commit").chmod(0o755)
    names.append("hooksPath")
    included = flags.parent / "included.cfg"
    included.write_text(f"[core]\n\tsshCommand = {program('included-ssh')}\n")
    with (ws.path / ".git/config").open("a") as fh:
        fh.write(f"[core]\n\tfsmonitor = {program('fsmonitor')}\n\thooksPath = {other_hooks}\n"
                 f"[filter \"evil\"]\n\tclean = {program('clean-filter')}\n\tsmudge = {program('smudge')}\n"
                 f"[diff \"evil\"]\n\ttextconv = {program('textconv')}\n"
                 f"[alias]\n\tadd = !{program('alias')}\n\tcommit = !{program('alias')}\n"
                 f"[include]\n\tpath = {included}\n")
    (ws.path / ".git/info").mkdir(exist_ok=True)
    (ws.path / ".git/info/attributes").write_text("* filter=evil diff=evil\n")
    (ws.path / ".gitattributes").write_text("*.txt filter=evil diff=evil\n")
    return names


def test_braid_git_runs_nothing_an_agent_planted_under_dot_git(tmp_path, origin, cache):
    url = str(origin.path)
    cached = cache.update(url)
    ws = open_workspace(tmp_path / "ws", cached, url)
    p = prepare_branch(ws, tb("a"), "main", [])
    flags = tmp_path / "flags"
    planted = plant(ws, flags)
    (ws.path / "x.txt").write_text("the agent's work\n")

    restored = reset_git_dir(ws, cached, url)
    assert {"config", "hooks", "info/attributes"} <= set(restored)
    assert commit_all(ws, "a").made
    commit = push_branch(ws, tb("a"), p.lease)

    assert sorted(f.name for f in flags.iterdir()) == [], f"braid's git ran planted programs (of {planted})"
    assert origin.show(tb("a"), "x.txt") == "the agent's work\n"  # no clean filter touched it
    assert origin.rev(tb("a")) == commit


def test_hooks_and_fsmonitor_never_run_even_before_the_git_dir_is_reset(tmp_path, origin, cache):
    ws = workspace(tmp_path, cache, origin)
    p = prepare_branch(ws, tb("a"), "main", [])
    flags = tmp_path / "flags"
    plant(ws, flags)
    (ws.path / "x.txt").write_text("x\n")
    assert commit_all(ws, "a").made
    push_branch(ws, tb("a"), p.lease)
    ran = {f.name for f in flags.iterdir()}
    assert not ran & {"pre-commit", "commit-msg", "post-commit", "pre-push", "reference-transaction", "hooksPath",
                      "fsmonitor", "alias", "post-index-change"}


def test_paths_git_refuses_are_left_out_and_the_rest_is_committed(tmp_path, origin, cache):
    ws = workspace(tmp_path, cache, origin)
    p = prepare_branch(ws, tb("a"), "main", [])
    for bad in (".GIT/config", "sub/.Git/hooks/pre-commit", "deep/er/.gIT"):
        (ws.path / bad).parent.mkdir(parents=True, exist_ok=True)
        (ws.path / bad).write_text("planted\n")
    (ws.path / "work.py").write_text("print('real work')\n")
    (ws.path / "sub/kept.txt").write_text("kept\n")
    (ws.path / "app.py").unlink()
    committed = commit_all(ws, "a")
    assert committed.made
    assert sorted(committed.left_out) == [".GIT/config", "deep/er/.gIT", "sub/.Git/hooks/pre-commit"]
    push_branch(ws, tb("a"), p.lease)
    assert origin.show(tb("a"), "work.py") == "print('real work')\n"
    assert origin.show(tb("a"), "sub/kept.txt") == "kept\n"
    files = origin.git("ls-tree", "-r", "--name-only", tb("a")).splitlines()
    assert "app.py" not in files and not [f for f in files if ".git" in f.lower()]


def test_push_with_empty_lease_creates_the_branch(tmp_path, origin, cache):
    ws = workspace(tmp_path, cache, origin)
    p = prepare_branch(ws, tb("a"), "main", [])
    (ws.path / "a.txt").write_text("a\n")
    assert commit_all(ws, "a").made
    commit = push_branch(ws, tb("a"), p.lease)
    assert origin.rev(tb("a")) == commit == GitRepo(ws.path).rev("HEAD")


def test_push_with_empty_lease_refuses_a_branch_that_appeared_meanwhile(tmp_path, origin, cache):
    ws = workspace(tmp_path, cache, origin)
    p = prepare_branch(ws, tb("a"), "main", [])
    assert p.lease == ""
    (ws.path / "mine.txt").write_text("mine\n")
    assert commit_all(ws, "a").made
    # another attempt pushed the branch while this one worked
    theirs = origin.commit({"theirs.txt": "theirs\n"}, "other attempt", branch=tb("a"))
    with pytest.raises(BranchMoved) as info:
        push_branch(ws, tb("a"), p.lease)
    assert tb("a") in str(info.value)
    assert origin.rev(tb("a")) == theirs


def test_push_refuses_when_a_resumed_branch_moved(tmp_path, origin, cache):
    pushed = origin.commit({"a.txt": "1\n"}, "a", branch=tb("a"))
    ws = workspace(tmp_path, cache, origin)
    p = prepare_branch(ws, tb("a"), "main", [], last_pushed=pushed)
    assert p.resumed
    (ws.path / "mine.txt").write_text("mine\n")
    assert commit_all(ws, "a").made
    theirs = origin.commit({"a.txt": "2\n"}, "moved", branch=tb("a"))
    with pytest.raises(BranchMoved):
        push_branch(ws, tb("a"), p.lease)
    assert origin.rev(tb("a")) == theirs


# -- credentials ---------------------------------------------------------------------------------------------


SECRET = "s3cr3t-Pa55word-value"


@pytest.fixture
def basic_auth(tmp_path) -> Path:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "username").write_text("alice")
    (creds / "password").write_text(SECRET)
    return creds


def test_no_credentials_no_env():
    assert git_auth_env(None) == {}


def test_askpass_answers_username_and_password_from_files(basic_auth):
    env = git_auth_env(basic_auth)
    program = Path(env["GIT_ASKPASS"])
    assert program.is_file() and os.access(program, os.X_OK)
    assert not program.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO), "askpass program readable by others"
    full = {**os.environ, **env}
    ask = lambda prompt: subprocess.run([str(program), prompt], env=full, capture_output=True, text=True,  # noqa: E731
                                        check=True).stdout
    assert ask("Username for 'https://git.example.com': ") == "alice"
    assert ask("Password for 'https://alice@git.example.com': ") == SECRET


def test_askpass_program_lives_where_only_its_owner_can_change_it(basic_auth):
    program = Path(git_auth_env(basic_auth)["GIT_ASKPASS"])
    for path in (program, program.parent):
        mode = path.stat().st_mode
        assert not mode & (stat.S_IWGRP | stat.S_IWOTH), f"{path}: anybody could rewrite what git runs"
        assert path.stat().st_uid == os.getuid()
    # its directory is private, so nobody can plant or swap the program either
    assert not program.parent.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    assert program.parent != Path(tempfile.gettempdir())


def test_secret_is_in_no_env_value_and_no_argv(basic_auth):
    env = git_auth_env(basic_auth)
    for name, value in env.items():
        assert SECRET not in value, f"secret in ${name}"
        assert SECRET not in name
    program = Path(env["GIT_ASKPASS"])
    assert SECRET not in program.read_text(), "secret written into the askpass program"
    assert SECRET not in str(program)


def test_git_itself_gets_the_credentials_through_askpass(tmp_path, basic_auth):
    # `git credential fill` is what git runs before an authenticated HTTP request
    env = {**os.environ, **GIT_ENV, **git_auth_env(basic_auth)}
    proc = subprocess.run(["git", "credential", "fill"], input="protocol=https\nhost=git.example.com\n\n",
                          env=env, capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "username=alice" in lines and f"password={SECRET}" in lines


def test_ssh_key_goes_by_path(tmp_path):
    creds = tmp_path / "ssh"
    creds.mkdir()
    key_text = "-----BEGIN OPENSSH PRIVATE KEY-----\nsecretkeymaterial\n-----END OPENSSH PRIVATE KEY-----\n"
    (creds / "ssh-privatekey").write_text(key_text)
    env = git_auth_env(creds)
    assert "GIT_ASKPASS" not in env
    command = env["GIT_SSH_COMMAND"]
    assert str(creds / "ssh-privatekey") in command
    assert "secretkeymaterial" not in command
    assert "StrictHostKeyChecking=accept-new" in command and "BatchMode=yes" in command

    (creds / "known_hosts").write_text("git.example.com ssh-ed25519 AAAA\n")
    command = git_auth_env(creds)["GIT_SSH_COMMAND"]
    assert f"UserKnownHostsFile={creds / 'known_hosts'}" in command
    assert "StrictHostKeyChecking=yes" in command
    for value in git_auth_env(creds).values():
        assert "secretkeymaterial" not in value
