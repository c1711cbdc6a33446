"""A workdir records its data's tokenizers; a resume or a load against other tokenizers is refused."""
import json

import pytest

from data_pipelines.errors import DataError
from gptface_jax.runtime import layout, tokenizer_record


def _data(path, tokenizer=b"spm model", codebook=b"code vectors"):
    path.mkdir(parents=True, exist_ok=True)
    (path / layout.TOKENIZER).write_bytes(tokenizer)
    (path / layout.CODEBOOK).write_bytes(codebook)
    return str(path)


def test_a_fresh_run_records_and_a_resume_checks(tmp_path):
    data, workdir = _data(tmp_path / "data"), str(tmp_path / "run")
    tokenizer_record.check_or_write(workdir, data, resuming=False)
    stored = json.load(open(tmp_path / "run" / layout.TOKENIZERS))
    assert set(stored["sha256"]) == {layout.TOKENIZER, layout.CODEBOOK}
    tokenizer_record.check_or_write(workdir, data, resuming=True)            # the same files: resumes
    tokenizer_record.check(workdir, _data(tmp_path / "copy"))                 # a copy elsewhere reads the same
    with pytest.raises(DataError, match=f"{layout.TOKENIZER} differs from the one .* trained with"):
        tokenizer_record.check_or_write(workdir, _data(tmp_path / "other", tokenizer=b"another spm"), resuming=True)
    with pytest.raises(DataError, match=f"{layout.CODEBOOK} differs"):
        tokenizer_record.check(workdir, _data(tmp_path / "retrained", codebook=b"other vectors"))
    (tmp_path / "copy" / layout.CODEBOOK).unlink()
    with pytest.raises(DataError, match=f"{layout.CODEBOOK} is missing"):
        tokenizer_record.check(workdir, str(tmp_path / "copy"))


def test_a_run_without_a_checkpoint_or_a_record_records_anew(tmp_path):
    workdir = str(tmp_path / "run")
    tokenizer_record.check_or_write(workdir, _data(tmp_path / "a"), resuming=False)
    # started again before its first checkpoint, on other data: nothing was trained on the first
    tokenizer_record.check_or_write(workdir, _data(tmp_path / "b", tokenizer=b"b"), resuming=False)
    tokenizer_record.check(workdir, str(tmp_path / "b"))
    # a workdir from before the record: resumed unchecked, recorded from then on; loads unchecked
    older = str(tmp_path / "older")
    tokenizer_record.check(older, str(tmp_path / "a"))
    tokenizer_record.check_or_write(older, str(tmp_path / "a"), resuming=True)
    with pytest.raises(DataError):
        tokenizer_record.check(older, str(tmp_path / "b"))
    # only the primary process writes
    tokenizer_record.check_or_write(str(tmp_path / "worker"), str(tmp_path / "a"), resuming=False, primary=False)
    assert tokenizer_record.recorded(str(tmp_path / "worker")) is None


def test_an_unreadable_record_is_a_clear_error(tmp_path):
    (tmp_path / layout.TOKENIZERS).write_text("{not json")
    with pytest.raises(DataError, match="unreadable"):
        tokenizer_record.check(str(tmp_path), _data(tmp_path / "data"))
