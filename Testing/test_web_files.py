"""What the page may read: paths under --data only, the picker, the host warning, ``onfh web`` arguments."""

from __future__ import annotations

import os

import pytest

from onfh.cli import main
from onfh.commands.web import data_folder
from onfh.errors import OnfhError
from onfh.web.files import (
    UPLOAD_FOLDER,
    host_warning,
    list_inputs,
    resolve_under,
    sample_cache_dir,
    upload_path,
)


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    (root / "patients" / "p1" / "dicom").mkdir(parents=True)
    (root / "patients" / "p1" / "dicom" / "IM0001.dcm").write_bytes(b"")
    (root / "hip.nii.gz").write_bytes(b"")
    (root / "hip.seg.nrrd").write_bytes(b"")
    (root / "notes.txt").write_text("x")
    (root / ".hidden.nrrd").write_bytes(b"")
    (tmp_path / "secret.nrrd").write_bytes(b"")
    return root


def test_paths_resolve_inside_the_data_folder_only(data, tmp_path):
    assert resolve_under(data, "hip.nii.gz") == (data / "hip.nii.gz").resolve()
    assert resolve_under(data, "patients/p1/dicom/") == (data / "patients/p1/dicom").resolve()
    for escape in ("../secret.nrrd", "patients/../../secret.nrrd", str(tmp_path / "secret.nrrd"), "~/x", ""):
        with pytest.raises(OnfhError):
            resolve_under(data, escape)


def test_a_link_out_of_the_data_folder_is_refused_and_not_listed(data, tmp_path):
    os.symlink(tmp_path / "secret.nrrd", data / "link.nrrd")
    with pytest.raises(OnfhError, match="outside the data folder"):
        resolve_under(data, "link.nrrd")
    assert "link.nrrd" not in list_inputs(data)


def test_picker_lists_images_and_dicom_folders_not_segmentations(data):
    assert list_inputs(data) == ["hip.nii.gz", "patients/p1/dicom/"]
    assert list_inputs(data, limit=1) == ["hip.nii.gz"]


def test_only_loopback_is_quiet():
    assert host_warning("127.0.0.1") is None and host_warning("localhost") is None
    warning = host_warning("0.0.0.0")
    assert warning and "0.0.0.0" in warning and "WARNING" in warning


def test_sample_cache_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert sample_cache_dir() == tmp_path / "onfh"


def test_data_folder_defaults_and_refuses_images_outside(data, tmp_path, monkeypatch):
    assert data_folder(str(data), [str(data / "hip.nii.gz")]) == data.resolve()
    assert data_folder(None, [str(data / "hip.nii.gz")]) == data.resolve()
    monkeypatch.chdir(data)
    assert data_folder(None, []) == data.resolve()
    with pytest.raises(OnfhError, match="outside --data"):
        data_folder(str(data), [str(tmp_path / "secret.nrrd")])
    with pytest.raises(OnfhError, match="not a folder"):
        data_folder(str(tmp_path / "missing"), [])


def test_cli_error_is_one_line(tmp_path, capsys):
    assert main(["web", "--data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("onfh: error:") and err.count("\n") == 1


def test_uploads_are_limited_named_safely_and_never_overwrite(tmp_path):
    assert upload_path(tmp_path, "hip.nii.gz", 10) == tmp_path / UPLOAD_FOLDER / "hip.nii.gz"
    assert upload_path(tmp_path, "../../etc/x.nrrd", 10) == tmp_path / UPLOAD_FOLDER / "x.nrrd"
    assert upload_path(tmp_path, "C:\\scans\\my hip.mha", 10) == tmp_path / UPLOAD_FOLDER / "my_hip.mha"
    (tmp_path / UPLOAD_FOLDER).mkdir()
    (tmp_path / UPLOAD_FOLDER / "hip.nii.gz").write_bytes(b"")
    assert upload_path(tmp_path, "hip.nii.gz", 10).name == "hip-2.nii.gz"
    with pytest.raises(OnfhError, match="over the 1 MiB upload limit"):
        upload_path(tmp_path, "big.nrrd", 2 * 1024**2, limit_bytes=1024**2)
    for bad in ("notes.txt", "hip.seg.nrrd", ".."):
        with pytest.raises(OnfhError, match="not an image file"):
            upload_path(tmp_path, bad, 10)
