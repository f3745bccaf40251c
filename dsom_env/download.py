"""Fetch a benchmark dataset's files from the public GitHub repositories that publish them.

``dsom data download DATASET`` rebuilds ``<data_dir>/<DATASET>/`` without the shared staging folder: every file is
pinned to a repository, a commit and a sha256, so what lands on disk is byte-identical to the files the benchmarks
and tests were run on. A download is written to a temporary file and moved into place only once its hash matches,
so an interrupted or tampered download never leaves a wrong file under the expected name.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from tqdm.auto import tqdm

GITHUB_RAW = "https://raw.githubusercontent.com"
TIMEOUT_SECONDS = 60
CHUNK_BYTES = 1 << 20
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


class DownloadError(RuntimeError):
    """A file could not be fetched, or its bytes do not have the pinned sha256; the message names file and URL."""


@dataclass(frozen=True)
class RemoteFile:
    """One dataset file as published upstream.

    :param local_path: path inside ``<data_dir>/<dataset>/``, ``/``-separated.
    :param repo: GitHub repository, ``owner/name``.
    :param commit: full commit hash the file is pinned to.
    :param upstream_path: path of the file inside the repository at that commit.
    :param sha256: hex sha256 of the file's bytes.
    """

    local_path: str
    repo: str
    commit: str
    upstream_path: str
    sha256: str

    def url(self, base_url: str = GITHUB_RAW) -> str:
        """The raw-file URL of this file under ``base_url``; ``quote`` escapes each path segment, keeping ``/``."""
        return f"{base_url.rstrip('/')}/{quote(self.repo)}/{self.commit}/{quote(self.upstream_path)}"


@dataclass(frozen=True)
class _Snapshot:
    """One commit of a public GitHub repository, from which dataset files are pinned."""

    repo: str
    commit: str

    def file(self, local_path: str, upstream_path: str, sha256: str) -> RemoteFile:
        return RemoteFile(local_path, self.repo, self.commit, upstream_path, sha256)


_NATIVE = _Snapshot("zjukg/NATIVE", "c72291c3d571b36c754897935d21718aa4568fe7")
_MOMOK = _Snapshot("zjukg/MoMoK", "99c2df114d48c79708ea0608644b685183d81bd9")
_K_ON = _Snapshot("zjukg/K-ON", "e118ed7c5f8970ea97dc8954d4cd924ffe155700")
_MMKB = _Snapshot("mniepert/mmkb", "dc1c89cac110ddbb9944d6ed5ab2b3c2339d320c")
_OPENKE = _Snapshot("thunlp/OpenKE", "64c4ec8157abfc39112772e9825a349091da45f1")
_JOY200505_DATA = _Snapshot("joy200505/data", "2d1827e8c1ff62304c45628d1d27a8d062a754a0")
_KG_BERT = _Snapshot("yao8839836/kg-bert", "0b8f625108efcb9b43603b6840f2548ff3d3c973")
_STAR_KGC = _Snapshot("wangbo9719/StAR_KGC", "a42a82c4a3510110e434611191b922ee0613495f")
_VILLMOW = _Snapshot("villmow/datasets_knowledge_embedding", "9e392453d6804d1f51c13e5650ae58ed48b638d5")

# Every file of a dataset that upstream publishes as a raw file, pinned to the bytes the benchmarks were run on.
DATASET_FILES: dict[str, tuple[RemoteFile, ...]] = {
    "MKG-W": (
        _NATIVE.file("1-1.txt", "benchmarks/MKG-W/1-1.txt",
                     "df013f351c0f3f09ffd5b75c8b8a6cd591ad49fa17d4497610501d74b0ba2a66"),
        _NATIVE.file("1-n.txt", "benchmarks/MKG-W/1-n.txt",
                     "387d7a49e92f6b552ff74ded7c3ff39aa5f544e754b978fee74ec46b876db795"),
        _NATIVE.file("entity2id.txt", "benchmarks/MKG-W/entity2id.txt",
                     "d94b546efcb535d8253821626dd32f3ee876b2f263b727a4a446bc74697785df"),
        _NATIVE.file("n-1.txt", "benchmarks/MKG-W/n-1.txt",
                     "c5670686830d7f8ac1baf32886c8867cc07000e6a3391b00885c249b1e4071b0"),
        _NATIVE.file("n-n.txt", "benchmarks/MKG-W/n-n.txt",
                     "87323279130bd66e4366b13d08ea97a0036458d12a30b413b780d294d6805f9f"),
        _NATIVE.file("relation2id.txt", "benchmarks/MKG-W/relation2id.txt",
                     "204203e03a92d4f973ee815449695bcfaae1b6917fcb08b65f3b0fb071a47f61"),
        _NATIVE.file("test2id.txt", "benchmarks/MKG-W/test2id.txt",
                     "0e1294b1f95c8ef80ad422aeefafea321d16c1d127570e6bb566882b2e053989"),
        _NATIVE.file("test2id_all.txt", "benchmarks/MKG-W/test2id_all.txt",
                     "318b63ec8f49f269b252ebe5b63c3fc6cbecc211fcf65e788dede835d9cb918f"),
        _NATIVE.file("train2id.txt", "benchmarks/MKG-W/train2id.txt",
                     "a9f316506a20a7b5bef7de3ceaaa1e82de554b8e92e6aa26e7cb54bcd8ada53d"),
        _NATIVE.file("type_constrain.txt", "benchmarks/MKG-W/type_constrain.txt",
                     "1cee62e538acc9a3469b1d0f03b8204c9fe61fe83262719089cd241cd841d8b8"),
        _NATIVE.file("valid2id.txt", "benchmarks/MKG-W/valid2id.txt",
                     "34dd556893b8e4832600298864dbd18012529a1f172793c21e45ad7bdee9d189"),
        _MOMOK.file("train.txt", "datasets/MKG-W/train.txt",
                    "66187e7d882a654915d8048897916ca8c5798e9c7df3a5b8ba8fab5d231cafcd"),
        _MOMOK.file("valid.txt", "datasets/MKG-W/valid.txt",
                    "6840322036c394af6ab33be5c4f988edafbd48d61fdc9e3b9b485c42e6f5a2da"),
        _MOMOK.file("test.txt", "datasets/MKG-W/test.txt",
                    "f0cfb7b5091d8601d0298889533e4f128237a700207b5739d27c0d81152f8245"),
        _K_ON.file("kon/LICENSE", "LICENSE",
                   "20cb33e243df8472fd406b0fa65043f17996ca08663f7026e157d61f786bebdd"),
        _K_ON.file("kon/ent_links.txt", "data/MKG-W/ent_links.txt",
                   "4aa7e9f5ff3bbeea7dee3124669edba7903e65b22844529999325c6bec624511"),
        _K_ON.file("kon/entity2id.txt", "data/MKG-W/entity2id.txt",
                   "b0a9de48669a3cb59a61780b097c9a73f5bbeaa01c03e1fb903c3cb77c1884b9"),
        _K_ON.file("kon/rel_links.txt", "data/MKG-W/rel_links.txt",
                   "4f4276bec413905e109b1daf938a91c57baf2d4be7d0e3f3bcb4904adfd02ffe"),
        _K_ON.file("kon/relation2id.txt", "data/MKG-W/relation2id.txt",
                   "cd2d209a729d0ef951d74c2c442392b77d43e8fc335ce1819dbe477505874bb1"),
    ),
    "MKG-Y": (
        _NATIVE.file("1-1.txt", "benchmarks/MKG-Y/1-1.txt",
                     "10a8f314e2ccd6f7e3e609c8c0d8fd3bdc9e600c7a6388baae5f2c733b467b26"),
        _NATIVE.file("1-n.txt", "benchmarks/MKG-Y/1-n.txt",
                     "2bad559e7e2fbaf18276f05eae801eaea3c4eb7ec3461b1cb311e8e9a95b4ecf"),
        _NATIVE.file("entity2id.txt", "benchmarks/MKG-Y/entity2id.txt",
                     "416f6f77c13d0cf0c5cae9625a62b9f7d26320c27ae408f5ce4e7eae3206b8d9"),
        _NATIVE.file("n-1.txt", "benchmarks/MKG-Y/n-1.txt",
                     "501d690a684f98b15490937c5462806418425218a2e1352154c7da6e3a04528f"),
        _NATIVE.file("n-n.txt", "benchmarks/MKG-Y/n-n.txt",
                     "0895a8ce231ff3ef6e591799751157331693d8a5d325331a76c01d23097add74"),
        _NATIVE.file("relation2id.txt", "benchmarks/MKG-Y/relation2id.txt",
                     "78d468edc02688f742c9b5a1030a071789ab24784dd2e48897643fe108ff4e4d"),
        _NATIVE.file("test2id.txt", "benchmarks/MKG-Y/test2id.txt",
                     "8602cbbe7e3aef2c857df66eec5f7e4a2d6b02b19f58feff085688fb28980158"),
        _NATIVE.file("test2id_all.txt", "benchmarks/MKG-Y/test2id_all.txt",
                     "b839fbfbd666631ce09d6ff92501ff50e5aac6c85c81d1d52f7fa029ef125860"),
        _NATIVE.file("train2id.txt", "benchmarks/MKG-Y/train2id.txt",
                     "71310c2c274e5ba2ce550433ef5c8496920bd03f50fd6057e64fc9c34e1e1aac"),
        _NATIVE.file("type_constrain.txt", "benchmarks/MKG-Y/type_constrain.txt",
                     "5d305df6c8166170f41eedba58f1dbee3f9f525869f17d411af3f59391a22eaf"),
        _NATIVE.file("valid2id.txt", "benchmarks/MKG-Y/valid2id.txt",
                     "6c82db2d2b809aabf72f94bc19be3080b53ffba1caec12b81510354a7fe3470e"),
        _MOMOK.file("train.txt", "datasets/MKG-Y/train.txt",
                    "3be3e886268cade513b35429d7aa5e145f51692c2f2bedbd7ff7d60a7a6c263e"),
        _MOMOK.file("valid.txt", "datasets/MKG-Y/valid.txt",
                    "bcc01dbedd4c25f87481ca47b00724a1de1808ec098d80e27fec595c13c8bae4"),
        _MOMOK.file("test.txt", "datasets/MKG-Y/test.txt",
                    "618b1a1ba2a1880e9cf0f56ae920b589df59a859442d4f1ff32a4e632c25bc4b"),
    ),
    "DB15K": (
        _NATIVE.file("1-1.txt", "benchmarks/DB15K/1-1.txt",
                     "0de9be69167dca53ee7734184c3ec481fe3374d8c8f170ae34720b2e06e424e8"),
        _NATIVE.file("1-n.txt", "benchmarks/DB15K/1-n.txt",
                     "00bdacab94b5bcb6e46357ca54ceaa4c616c784d47e1fdfeed27d198946c4107"),
        _NATIVE.file("entity2id.txt", "benchmarks/DB15K/entity2id.txt",
                     "8f8d070f1bb24d07ed3050e4e4e780cb7f2245d0b14db3346e8db4fa55981728"),
        _NATIVE.file("n-1.txt", "benchmarks/DB15K/n-1.txt",
                     "938ba707a01debe3f69ddfbe91bb7806426748c726ea059523694e32fadbfd52"),
        _NATIVE.file("n-n.txt", "benchmarks/DB15K/n-n.txt",
                     "010440236d03475e38da960e2812711acf64d4684ff9ec877b20accf32eb5652"),
        _NATIVE.file("relation2id.txt", "benchmarks/DB15K/relation2id.txt",
                     "25e5a975ee079dbd5b8d22ffe23575a9e3135d263e0a3763224777bf526c1a74"),
        _NATIVE.file("test2id.txt", "benchmarks/DB15K/test2id.txt",
                     "15f28535d04f3711b739a49d824f2346167384283cde57123376392d418ad6de"),
        _NATIVE.file("test2id_all.txt", "benchmarks/DB15K/test2id_all.txt",
                     "b495bbb16d77fdb28218203af8a4aa4c5cfcf887421b819098026c3451797cc3"),
        _NATIVE.file("train2id.txt", "benchmarks/DB15K/train2id.txt",
                     "d41f9b9ab5c0e6eed393e0f93febb4258dc02e5e4a4e2a99c49410d167522804"),
        _NATIVE.file("type_constrain.txt", "benchmarks/DB15K/type_constrain.txt",
                     "14b29c43fa0ffff9beedcc36beb090ca69d1a0d77aab64408fe718da7d52b221"),
        _NATIVE.file("valid2id.txt", "benchmarks/DB15K/valid2id.txt",
                     "dc7ed39aa14e35a2f7ac09a0ff046067ee0e0d7953f8a204f04e7c09776095b1"),
        _NATIVE.file("valid.txt", "benchmarks/DB15K/valid.txt",
                     "73e936ee24e11bd0fd31630a573ea3801da930c7fb6a7397ce0fed47f6f7f133"),
        _NATIVE.file("test.txt", "benchmarks/DB15K/test.txt",
                     "6c437beaaa65de21f910b447d0c02a5b3aac75ba91de9017eb72cf8495a2260f"),
        _MMKB.file("mmkb/DB15K_ImageIndex.txt", "DB15K/DB15K_ImageIndex.txt",
                   "fcd2f034111388af8ae3fc58e15822d85b02d9d043b5191b4b0ffa0a622bd29b"),
        _MMKB.file("mmkb/DB15K_SameAsLink.txt", "DB15K/DB15K_SameAsLink.txt",
                   "329f13f5834eff712ab7fcaa214407d3f48bcaa9b6c48e5fcae632994e070141"),
        _MMKB.file("mmkb/LICENSE.txt", "LICENSE.txt",
                   "aad5115ab20d36e32ea2837e4a0726278daa3c92b2ca1582555eb4c61a7f7e3a"),
    ),
    "FB15K-237": (
        _OPENKE.file("entity2id.txt", "benchmarks/FB15K237/entity2id.txt",
                     "e4546cfdcd0b9bd0151cc0f6ef2edee29eb2bb55a3d47e668194999c036fba0d"),
        _OPENKE.file("relation2id.txt", "benchmarks/FB15K237/relation2id.txt",
                     "fefd26d6cd5ff9d360efe5360c11bf112d019f42b3acf165a5c04aa2b66a42d9"),
        _OPENKE.file("train2id.txt", "benchmarks/FB15K237/train2id.txt",
                     "5f44223a02b39b8e398e77a787feb4f06e9ffccf1ae87047bbf38fcc8cc08bd2"),
        _OPENKE.file("valid2id.txt", "benchmarks/FB15K237/valid2id.txt",
                     "7d21e778de4369d5348f5cff23a08dc847ab5fce4b5f07c80113297d2dc60a86"),
        _OPENKE.file("test2id.txt", "benchmarks/FB15K237/test2id.txt",
                     "6027e649c1716ac9c1ef2f24672a416aa277aff3e14850ef915ac5a21df70417"),
        _OPENKE.file("type_constrain.txt", "benchmarks/FB15K237/type_constrain.txt",
                     "84aa5f35c0dd51e7f5928778e14462c5a0f31db5d9cbf4e722a4da7e2c438249"),
        _JOY200505_DATA.file("README_original_FB15k-237.txt", "FB15k-237/README.txt",
                             "a0b4da912f88d7d54f2b715261c0d8adc49c8ec7dd59cff462146a35df42f762"),
        _KG_BERT.file("entity2name_kgbert.txt", "data/FB15k-237/entity2text.txt",
                      "16beedcfad3d32696e8b0b98cfa0f5eeb144f5142225f227a64fd9ce37447da5"),
        _KG_BERT.file("relation2text_kgbert.txt", "data/FB15k-237/relation2text.txt",
                      "4bf7cb6ea0ac09b17ad210889f723be5e079669f6ae5d507787e1320bbaa0f72"),
        _STAR_KGC.file("entity2name_desc_firstsentence_StAR.txt", "StAR/data/FB15k-237/fb-entity2text-new.txt",
                       "d982bb5b950820dabc00aee9870cae2035d48c169d10c9f2c225579e19528aa2"),
        _VILLMOW.file("entity2wikidata_villmow.json", "FB15k-237/entity2wikidata.json",
                      "80e74bb002fb9ca0ecd3d63879a3a51121db855d312a101917a1ffb6aed2fea9"),
    ),
    "WN18": (
        _OPENKE.file("entity2id.txt", "benchmarks/WN18/entity2id.txt",
                     "a0e127ef59529a4662dbf5f12b1278efbcab9d4636eb80e5828a75311ebbb427"),
        _OPENKE.file("relation2id.txt", "benchmarks/WN18/relation2id.txt",
                     "b0f326f55f4c4ca403e97e97c495e93627bea3fb8f08b9592afd31ef5bcf9752"),
        _OPENKE.file("train2id.txt", "benchmarks/WN18/train2id.txt",
                     "1bcaff005ba0a5cdd9f9f9982812ac9a0750a84989b4335a50e4c93e13d158c0"),
        _OPENKE.file("valid2id.txt", "benchmarks/WN18/valid2id.txt",
                     "86cf1437161c5982b9a9ef26d5f8400161a700aa4b3350a6c347d508369a9cc6"),
        _OPENKE.file("test2id.txt", "benchmarks/WN18/test2id.txt",
                     "ab06e417090ba904b98796d72fa72c3a5d00241639a849859b2b458074e16ba6"),
        _OPENKE.file("type_constrain.txt", "benchmarks/WN18/type_constrain.txt",
                     "b548423bbb5ec2008773806a8de1cc3f25b9171bda11e9b538d4e6e055fc527b"),
        _JOY200505_DATA.file("valid.txt", "WN18/valid.txt",
                             "13347bfb5e17d1cae003e0bfe29b4716d3ab748e8cfb6af997138d37da3a51dc"),
        _JOY200505_DATA.file("test.txt", "WN18/test.txt",
                             "d22c19d176d4ba6a6f0d0c6bfce39ab3c16e3b20e1df6f9efe0d9ed86542fa10"),
        _JOY200505_DATA.file("README_original_WN18.txt", "WN18/README",
                             "ca51b0f5645fcce721cdabdcda24b2ddcf278679e6c631eb08a6fa6aa51159c5"),
        _JOY200505_DATA.file("Wordnet3.0-LICENSE", "WN18/Wordnet3.0-LICENSE",
                             "6c3c1815039b91dc01bdf39efa5d959fbb951d62a434e763310464d24d751c1c"),
        _KG_BERT.file("entity2text_kgbert.txt", "data/WN18/entity2text.txt",
                      "8f5c6f11753dafa879917b9bdf73d398ceb3bd4bed8d5553177e1e0f2c37521f"),
        _KG_BERT.file("relation2text_kgbert.txt", "data/WN18/relation2text.txt",
                      "25b43c9140c9c21815010e08ad36bbdaa034e7853c92f00ff65d314759b1f4c7"),
    ),
}

# Files of the staged datasets that are not raw files upstream, so ``download_dataset`` cannot fetch them.
_CONVE_TARBALL = "member of TimDettmers/ConvE's FB15k-237.tar.gz, not a raw file"
NOT_DOWNLOADABLE: dict[str, dict[str, str]] = {
    "FB15K-237": {
        "train.txt": _CONVE_TARBALL,
        "valid.txt": _CONVE_TARBALL,
        "test.txt": _CONVE_TARBALL,
        "entity_text_by_id.tsv": "derived: entity2id.txt joined with the kg-bert, StAR and Wikidata texts",
    },
    "WN18": {
        "train.txt": "derived: train2id.txt written with names (the original wordnet-mlj12-train.txt is unpublished)",
        "entity_text_by_id.tsv": "derived: entity2id.txt joined with entity2text_kgbert.txt",
    },
}


def download_dataset(
    name: str, data_dir: str | os.PathLike, base_url: str = GITHUB_RAW, progress: bool = True
) -> list[Path]:
    """Fetch every raw file of dataset ``name`` into ``<data_dir>/<name>/``, verifying each sha256.

    Files already present with the pinned sha256 are kept; missing files and files with another hash are fetched.
    Files listed in :data:`NOT_DOWNLOADABLE` are named in one warning at the end.

    :param name: dataset name, a key of :data:`DATASET_FILES` (e.g. ``"MKG-W"``).
    :param data_dir: folder that holds one sub-folder per dataset.
    :param base_url: server laid out as ``<base_url>/<repo>/<commit>/<path>``; GitHub's raw-file host by default.
    :param progress: show a progress bar over the files.
    :return: the local path of every file written or verified, in table order.
    :raises ValueError: ``name`` is not a known dataset.
    :raises DownloadError: a file could not be fetched, or its bytes do not have the pinned sha256.
    """
    if name not in DATASET_FILES:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_FILES)}")
    dataset_dir = Path(data_dir) / name
    local_paths = []
    for remote in tqdm(DATASET_FILES[name], desc=f"download {name}", unit="file", disable=not progress):
        destination = dataset_dir / remote.local_path
        if not (destination.is_file() and _sha256_of_file(destination) == remote.sha256):
            _fetch_verified(remote.url(base_url), destination, remote.sha256)
        local_paths.append(destination)
    left_out = NOT_DOWNLOADABLE.get(name)
    if left_out:
        reasons = "; ".join(f"{path} ({reason})" for path, reason in left_out.items())
        warnings.warn(f"{name}: these files have no raw upstream file and were not downloaded: {reasons}", stacklevel=2)
    return local_paths


def _fetch_verified(url: str, destination: Path, expected_sha256: str) -> None:
    """Download ``url`` next to ``destination`` and move it there only if its sha256 is ``expected_sha256``."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    temporary = Path(temporary_name)
    try:
        with os.fdopen(handle, "wb") as temporary_file:
            actual_sha256 = _copy_url(url, temporary_file, destination)
        if actual_sha256 != expected_sha256:
            raise DownloadError(
                f"{destination}: sha256 mismatch for {url}: expected {expected_sha256}, got {actual_sha256}"
            )
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _copy_url(url: str, sink: BinaryIO, destination: Path) -> str:
    """Write the body of ``url`` to ``sink`` (on its way to ``destination``) and return its hex sha256."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            while chunk := response.read(CHUNK_BYTES):
                digest.update(chunk)
                sink.write(chunk)
    except _NETWORK_ERRORS as error:
        raise DownloadError(f"{destination}: cannot fetch {url}: {error}") from error
    return digest.hexdigest()


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
