"""One contract for every store: a folder, moto's S3, Azurite and the fake GCS server
answer the same calls the same way (tests/servers.py starts the servers)."""

from __future__ import annotations

import os
import uuid

import pytest
from PIL import Image

from augcli.errors import UsageError
from augcli.stores import FolderStore, Store, StoreSpec, check_folders

from .conftest import photo_like, save
from .servers import GCS_OPTIONS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore::ResourceWarning")

KINDS = ["folder", "s3", "az", "gs"]


@pytest.fixture(params=KINDS)
def store(request, tmp_path) -> Store:
    """A fresh, empty store of each kind."""
    kind = request.param
    if kind == "folder":
        return FolderStore(tmp_path / "store")
    servers = request.getfixturevalue("servers")
    name = f"st-{uuid.uuid4().hex[:10]}"
    if kind == "s3":
        servers.s3().mkdir(name)
        return StoreSpec.of(f"s3://{name}/prefix").open()
    if kind == "az":
        if servers.azure_missing:
            pytest.skip(servers.azure_missing)
        import adlfs

        adlfs.AzureBlobFileSystem().mkdir(name)
        return StoreSpec.of(f"az://{name}/prefix").open()
    return StoreSpec.of(f"gs://gcs-data/{name}", GCS_OPTIONS).open()


def test_keys_are_relative_and_sorted_and_hidden_ones_only_when_asked(store):
    for key in ("b.txt", "a/c.txt", "a/B.txt", ".augcli.lock", "a/.journal/part", "a/.tmp"):
        store.publish(key, key.encode())
    assert store.keys() == ["a/B.txt", "a/c.txt", "b.txt"]
    assert store.keys(hidden=True) == [".augcli.lock", "a/.journal/part", "a/.tmp", "a/B.txt",
                                       "a/c.txt", "b.txt"]


def test_stamps_and_sizes_come_from_one_listing_and_match_stamp(store):
    store.publish("x/one.bin", b"12345")
    store.publish("two.bin", b"ab")
    store.publish(".hidden", b"abc")
    stamps = store.stamps()
    assert sorted(stamps) == ["two.bin", "x/one.bin"]
    assert stamps["x/one.bin"]["source_size"] == 5 and stamps["two.bin"]["source_size"] == 2
    assert isinstance(stamps["two.bin"]["source_mtime_ns"], int)
    assert store.stamp("x/one.bin") == stamps["x/one.bin"]
    assert store.sizes() == {"two.bin": 2, "x/one.bin": 5}


def test_read_header_and_read_image(store, tmp_path):
    save(tmp_path / "photo.png", photo_like(30, 40, seed=1))
    data = (tmp_path / "photo.png").read_bytes()
    store.publish("cats/photo.png", data)
    assert store.read("cats/photo.png") == data

    def size(file):
        with Image.open(file) as image:
            return image.size

    assert store.header("cats/photo.png", size) == (40, 30)
    assert store.read_image("cats/photo.png").shape[:2] == (30, 40)
    with pytest.raises(FileNotFoundError):
        store.read("cats/missing.png")


def test_publish_is_whole_and_overwrites(store):
    store.publish("a/b.bin", iter([b"first ", b"chunk ", b"last"]))
    assert store.read("a/b.bin") == b"first chunk last"
    store.publish("a/b.bin", b"short")
    assert store.read("a/b.bin") == b"short"
    assert store.keys() == ["a/b.bin"]


def test_exists_existing_and_delete(store):
    store.publish("here.txt", b"1")
    store.publish(".hidden", b"2")
    assert store.exists("here.txt") and not store.exists("gone.txt")
    assert store.existing(["here.txt", ".hidden", "gone.txt"]) == {"here.txt", ".hidden"}
    store.delete("here.txt")
    store.delete("never-was.txt")  # no error
    assert not store.exists("here.txt")
    assert store.keys() == []


def test_journal_appends_then_a_whole_publish_replaces_it(store):
    journal = store.journal("log.jsonl")
    journal.write(b'{"n": 1}\n')
    journal.flush()
    journal.write(b'{"n": 2}\n')
    journal.flush()
    journal.close()
    assert store.read_journal("log.jsonl") == b'{"n": 1}\n{"n": 2}\n'
    assert store.read_journal("other.jsonl") == b""

    store.publish("log.jsonl", b'{"whole": true}\n')
    store.clear_journal("log.jsonl")
    assert store.read_journal("log.jsonl") == b'{"whole": true}\n'

    journal = store.journal("log.jsonl")
    journal.write(b'{"n": 3}\n')
    journal.close()
    assert store.read_journal("log.jsonl") == b'{"whole": true}\n{"n": 3}\n'
    assert store.keys() == ["log.jsonl"]  # a journal's parts, if any, are hidden


def test_a_second_lock_is_refused_while_the_first_is_held(store):
    with store.lock():
        assert ".augcli.lock" in store.keys(hidden=True)
        with pytest.raises(UsageError, match="another augcli run"), store.lock():
            pass
    assert ".augcli.lock" not in store.keys(hidden=True)
    with store.lock():  # free again
        pass


def test_names_outside_the_store_are_refused(store):
    assert store.is_inside("a/b.png")
    for name in ("../x", "a/../../x", "/etc/passwd", "", "a\\b", "a\x00b", None):
        assert not store.is_inside(name)
    store.check_inside(["a/b.png", "c.png"])
    with pytest.raises(UsageError, match="leads out of the output"):
        store.check_inside(["../x/y.png"])
    store.publish("a/keep.png", b"1")
    store.publish("a/drop.png", b"2")
    store.remove(["a/drop.png", "../a/keep.png"])  # one outside: left alone
    assert store.keys() == ["a/keep.png"]


def test_a_folder_refuses_a_name_that_leads_out_through_a_link(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.png").write_bytes(b"keep me")
    store = FolderStore(tmp_path / "out")
    (tmp_path / "out").mkdir()
    os.symlink(outside, tmp_path / "out" / "link")
    assert not store.is_inside("link/victim.png")
    with pytest.raises(UsageError, match="leads out of the output folder"):
        store.check_inside(["link/new.png"])
    store.remove(["link/victim.png"])
    assert (outside / "victim.png").read_bytes() == b"keep me"


def test_a_spec_is_plain_text_opened_once_per_process(tmp_path):
    spec = StoreSpec.of(tmp_path)
    assert spec.location == str(tmp_path.resolve()) and spec.options == "{}"
    assert spec.open() is spec.open()
    assert isinstance(spec.open(), FolderStore)


def test_input_inside_output_is_refused(tmp_path):
    (tmp_path / "out" / "in").mkdir(parents=True)
    with pytest.raises(UsageError, match="input folder .* is inside the output folder"):
        check_folders(tmp_path / "out" / "in", tmp_path / "out")
