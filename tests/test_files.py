"""Output files (io/files.py): atomic for regular files, into a symlink's target, written through for
devices and FIFOs; never a half-written or clobbered file."""

import os
import stat
import threading

import numpy as np
import pytest
import soundfile as sf

from qwen3tts_cli.errors import InputError
from qwen3tts_cli.io.audio import WavWriter, check_audio_name, write_wav
from qwen3tts_cli.io.files import check_output, output_target, replace_atomically


def read_fifo(path, out: list) -> threading.Thread:
    def run():
        with open(path, "rb") as f:
            out.append(f.read())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_regular_files_are_replaced_whole(tmp_path):
    p = tmp_path / "a.wav"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with replace_atomically(p) as (where, through):
            assert not through and where.parent == tmp_path and where != p
            where.write_bytes(b"half")
            raise RuntimeError("boom")
    assert p.read_bytes() == b"old" and os.listdir(tmp_path) == ["a.wav"]
    with replace_atomically(p) as (where, _):
        where.write_bytes(b"new")
    assert p.read_bytes() == b"new" and os.listdir(tmp_path) == ["a.wav"]


def test_a_symlink_writes_its_target(tmp_path):
    target = tmp_path / "real.wav"
    target.write_bytes(b"old")
    link = tmp_path / "link.wav"
    link.symlink_to(target)
    write_wav(link, np.zeros(480, np.float32))
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert sf.info(str(target)).frames == 480
    dangling = tmp_path / "new-link.wav"
    dangling.symlink_to(tmp_path / "not-yet.wav")
    write_wav(dangling, np.zeros(10, np.float32))
    assert dangling.is_symlink() and sf.info(str(tmp_path / "not-yet.wav")).frames == 10


def test_a_fifo_is_written_through(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list = []
    reader = read_fifo(fifo, got)
    audio = np.linspace(-0.5, 0.5, 1000, dtype=np.float32)
    write_wav(fifo, audio)
    reader.join(10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still the FIFO, not a file put in its place
    data = got[0]
    assert data[:4] == b"RIFF" and int.from_bytes(data[40:44], "little") == 2000 and len(data) == 44 + 2000
    pcm = np.frombuffer(data[44:], "<i2")
    assert pcm[0] == -16384 and pcm[-1] == 16384
    assert output_target(fifo) == (fifo, True)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_device_is_written_through_not_replaced(tmp_path):
    null = tmp_path / "mynull"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    write_wav(null, np.zeros(100, np.float32))
    with WavWriter(null, length=5) as w:
        w.write(np.zeros(5, np.float32))
    assert stat.S_ISCHR(os.stat(null).st_mode)


def test_checks_before_any_work(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        check_output(tmp_path)
    with pytest.raises(InputError, match="folder does not exist"):
        check_output(tmp_path / "no" / "x.wav")
    check_output(tmp_path / "x.wav")
    for ok in ("x.wav", "x.WAV", "x", "/dev/null"):
        check_audio_name(ok)
    with pytest.raises(InputError, match=r"written as it is produced, as WAV"):
        check_audio_name("x.mp3")  # a progressive output (stream -o, decode -o)
    for ok in ("x.flac", "x.MP3", "x.ogg", "x.opus", "x.wav"):
        check_audio_name(ok, encoded=True)
    with pytest.raises(InputError, match=r"unsupported output format '\.aac' \(this output writes wav, flac"):
        check_audio_name("x.aac", encoded=True)


def test_a_full_disk_at_the_temporary_file_is_a_runtime_error(tmp_path, monkeypatch):
    import errno
    import tempfile

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with pytest.raises(OSError) as e:
        with replace_atomically(tmp_path / "out.wav"):
            pass
    assert not isinstance(e.value, InputError) and e.value.filename == str(tmp_path / "out.wav")
    assert e.value.errno == errno.ENOSPC and list(tmp_path.iterdir()) == []
