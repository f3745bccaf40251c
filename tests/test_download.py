"""``download_dataset`` against a loopback HTTP server that publishes the staged files as GitHub's raw host does.

The truth every test checks against is independent of the module's table: the staged files under ``DSOM_DATA_DIR``
(their bytes and hashes), the requests the server actually received, and what is left on disk.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dsom_env.download import DATASET_FILES, NOT_DOWNLOADABLE, DownloadError, download_dataset

SMALL_DATASET = "MKG-Y"


@pytest.fixture
def shared_datasets() -> Path:
    data_dir = os.environ.get("DSOM_DATA_DIR")
    if data_dir is None:
        pytest.skip("DSOM_DATA_DIR is not set")
    return Path(data_dir)


class _RecordingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder and records every requested path on the server."""

    def do_GET(self) -> None:
        self.server.requested_paths.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Upstream:
    """A folder laid out as ``<repo>/<commit>/<path>``, served on loopback at ``base_url``."""

    root: Path
    base_url: str
    requested_paths: list[str] = field(default_factory=list)

    def publish(self, shared_datasets: Path, dataset: str) -> None:
        """Copy the staged files of ``dataset`` to where upstream publishes them."""
        for remote in DATASET_FILES[dataset]:
            target = self.root / remote.repo / remote.commit / remote.upstream_path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shared_datasets / dataset / remote.local_path, target)

    def url_of(self, repo: str, commit: str, path: str) -> str:
        return f"{self.base_url}/{repo}/{commit}/{path}"


@pytest.fixture
def upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    monkeypatch.setenv("no_proxy", "*")  # a proxy configured in the environment must not see loopback requests
    root = tmp_path / "upstream"
    root.mkdir()
    handler = functools.partial(_RecordingHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    served = Upstream(root=root, base_url=f"http://127.0.0.1:{server.server_address[1]}")
    server.requested_paths = served.requested_paths
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served
    server.shutdown()
    server.server_close()
    thread.join()


def _files_under(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def test_table_hashes_match_shared_files(shared_datasets: Path) -> None:
    for dataset, remotes in DATASET_FILES.items():
        for remote in remotes:
            actual = hashlib.sha256((shared_datasets / dataset / remote.local_path).read_bytes()).hexdigest()
            assert actual == remote.sha256, f"{dataset}/{remote.local_path}"


def test_every_staged_file_is_downloadable_or_explained(shared_datasets: Path) -> None:
    for dataset, remotes in DATASET_FILES.items():
        staged = _files_under(shared_datasets / dataset) - {"SOURCE.txt"}
        downloadable = {remote.local_path for remote in remotes}
        assert staged - downloadable == set(NOT_DOWNLOADABLE.get(dataset, {})), dataset


def test_download_is_byte_identical_to_shared_files(shared_datasets: Path, upstream: Upstream, tmp_path: Path) -> None:
    upstream.publish(shared_datasets, SMALL_DATASET)
    data_dir = tmp_path / "data"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left out of this dataset, so nothing to warn about
        written = download_dataset(SMALL_DATASET, data_dir, base_url=upstream.base_url, progress=False)

    shared = shared_datasets / SMALL_DATASET
    expected_names = _files_under(shared) - {"SOURCE.txt"}
    assert {path.relative_to(data_dir / SMALL_DATASET).as_posix() for path in written} == expected_names
    assert _files_under(data_dir / SMALL_DATASET) == expected_names
    for name in expected_names:
        assert (data_dir / SMALL_DATASET / name).read_bytes() == (shared / name).read_bytes(), name
    assert len(upstream.requested_paths) == len(expected_names)


def test_second_download_fetches_nothing(shared_datasets: Path, upstream: Upstream, tmp_path: Path) -> None:
    upstream.publish(shared_datasets, SMALL_DATASET)
    first = download_dataset(SMALL_DATASET, tmp_path / "data", base_url=upstream.base_url, progress=False)
    requests_after_first = len(upstream.requested_paths)

    second = download_dataset(SMALL_DATASET, tmp_path / "data", base_url=upstream.base_url, progress=False)

    assert requests_after_first > 0
    assert len(upstream.requested_paths) == requests_after_first
    assert second == first


def test_local_file_with_wrong_bytes_is_fetched_again(
    shared_datasets: Path, upstream: Upstream, tmp_path: Path
) -> None:
    upstream.publish(shared_datasets, SMALL_DATASET)
    data_dir = tmp_path / "data"
    download_dataset(SMALL_DATASET, data_dir, base_url=upstream.base_url, progress=False)
    damaged = data_dir / SMALL_DATASET / "train2id.txt"
    damaged.write_bytes(b"0\n")
    upstream.requested_paths.clear()

    download_dataset(SMALL_DATASET, data_dir, base_url=upstream.base_url, progress=False)

    assert upstream.requested_paths == [
        "/zjukg/NATIVE/c72291c3d571b36c754897935d21718aa4568fe7/benchmarks/MKG-Y/train2id.txt"
    ]
    assert damaged.read_bytes() == (shared_datasets / SMALL_DATASET / "train2id.txt").read_bytes()


def test_corrupted_upstream_file_raises_and_leaves_nothing(
    shared_datasets: Path, upstream: Upstream, tmp_path: Path
) -> None:
    upstream.publish(shared_datasets, SMALL_DATASET)
    served = upstream.root / "zjukg/MoMoK/99c2df114d48c79708ea0608644b685183d81bd9/datasets/MKG-Y/train.txt"
    served.write_bytes(served.read_bytes().replace(b"wasBornIn", b"wasBornOn", 1))
    data_dir = tmp_path / "data"

    with pytest.raises(DownloadError, match=r"MKG-Y[/\\]train\.txt") as raised:
        download_dataset(SMALL_DATASET, data_dir, base_url=upstream.base_url, progress=False)

    message = str(raised.value)
    assert hashlib.sha256(served.read_bytes()).hexdigest() in message
    assert "/datasets/MKG-Y/train.txt" in message
    dataset_dir = data_dir / SMALL_DATASET
    assert not (dataset_dir / "train.txt").exists()
    shared = shared_datasets / SMALL_DATASET
    for name in _files_under(dataset_dir):  # only verified files remain: no temporary file is left behind
        assert (dataset_dir / name).read_bytes() == (shared / name).read_bytes(), name


def test_unknown_dataset_lists_known_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as raised:
        download_dataset("NO-SUCH-KG", tmp_path, progress=False)
    for known in ("MKG-W", "MKG-Y", "DB15K", "FB15K-237", "WN18"):
        assert known in str(raised.value)


def test_missing_upstream_file_names_url(upstream: Upstream, tmp_path: Path) -> None:
    first_url = upstream.url_of("zjukg/NATIVE", "c72291c3d571b36c754897935d21718aa4568fe7", "benchmarks/MKG-Y/1-1.txt")
    with pytest.raises(DownloadError, match="404") as raised:
        download_dataset(SMALL_DATASET, tmp_path / "data", base_url=upstream.base_url, progress=False)
    assert first_url in str(raised.value) and "1-1.txt" in str(raised.value).split(":")[0]  # the file, then the URL
    assert _files_under(tmp_path / "data") == set()


def test_files_without_raw_upstream_are_named_in_a_warning(
    shared_datasets: Path, upstream: Upstream, tmp_path: Path
) -> None:
    dataset = "FB15K-237"
    shared = shared_datasets / dataset
    dataset_dir = tmp_path / "data" / dataset
    dataset_dir.mkdir(parents=True)
    for remote in DATASET_FILES[dataset]:  # already present and correct, so nothing is fetched
        (dataset_dir / remote.local_path).symlink_to((shared / remote.local_path).resolve())

    with pytest.warns(UserWarning) as caught:
        download_dataset(dataset, tmp_path / "data", base_url=upstream.base_url, progress=False)

    assert upstream.requested_paths == []
    assert len(caught) == 1
    message = str(caught[0].message)
    for name in ("train.txt", "valid.txt", "test.txt", "entity_text_by_id.tsv"):
        assert name in message


def test_dsom_data_download_fetches_a_loadable_dataset(shared_datasets: Path, upstream: Upstream, tmp_path: Path) -> None:
    from agents.cli import main
    from dsom_env.data import load_dataset

    upstream.publish(shared_datasets, SMALL_DATASET)
    assert main(["data", "download", SMALL_DATASET, "--data-dir", str(tmp_path), "--base-url", upstream.base_url]) == 0
    assert load_dataset(SMALL_DATASET, tmp_path).summary() == load_dataset(SMALL_DATASET, shared_datasets).summary()
