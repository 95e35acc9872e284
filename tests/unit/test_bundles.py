import io
import tarfile
import zipfile

import pytest

from workflows.bundles import BundleError, extract, safe_relative

pytestmark = pytest.mark.unit


def _tar(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_tar_bundle_extracts_files(tmp_path):
    written = extract(_tar([_file("wf/main.cwl", b"cwlVersion: v1.2")]), "b.tar.gz", tmp_path)
    assert written == ["wf/main.cwl"]
    assert (tmp_path / "wf/main.cwl").read_bytes() == b"cwlVersion: v1.2"


@pytest.mark.parametrize("name", ["/etc/passwd", "../escape.cwl", "a/../../escape"])
def test_tar_member_leaving_the_tree_is_refused(tmp_path, name):
    with pytest.raises(BundleError, match="absolute path or '..'"):
        extract(_tar([_file(name)]), "b.tar.gz", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_tar_symlink_is_refused(tmp_path):
    link = tarfile.TarInfo("link")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    with pytest.raises(BundleError, match="link or special file"):
        extract(_tar([(link, None)]), "b.tar", tmp_path)


def test_zip_with_dotdot_is_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../x.cwl", "x")
    with pytest.raises(BundleError):
        extract(buf.getvalue(), "b.zip", tmp_path)


def test_not_an_archive_says_so(tmp_path):
    with pytest.raises(BundleError, match="not a valid zip"):
        extract(b"hello", "b.zip", tmp_path)


def test_safe_relative_refuses_absolute_names():
    with pytest.raises(BundleError):
        safe_relative("/etc/passwd")
    assert str(safe_relative("dir/file.cwl")) == "dir/file.cwl"
