"""The package's rooms and the one direction of the arrows between them (gptface_jax/*/__init__.py)."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "gptface_jax"
# Lowest first: a module may import its own room and the rooms before it, never one after it.
ROOMS = ("models", "runtime", "generate", "serving", "evals", "train", "")


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in ROOMS else ""


def imported_modules(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every gptface_jax import in a file, including imports inside functions."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gptface_jax"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            out += [(node.lineno, n if room_of(n) or node.module == "gptface_jax" else node.module) for n in names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("gptface_jax")]
    return out


def test_every_module_lives_in_a_room():
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "cli.py", "demo.py", "sweeps.py"]
    for room in ROOMS[:-1]:
        init = PACKAGE / room / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), f"{room}/__init__.py says what the room is for"


@pytest.mark.parametrize("room", ROOMS[:-1])
def test_imports_point_down(room):
    allowed = set(ROOMS[: ROOMS.index(room) + 1]) - {""}
    wrong = []
    for path in sorted((PACKAGE / room).glob("*.py")):
        for line, module in imported_modules(path):
            if room_of(module) not in allowed:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    assert not wrong, "imports that point up:\n" + "\n".join(wrong)


def test_the_checker_sees_an_upward_import(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from gptface_jax.train import trainer\n    from gptface_jax.models import vq\n")
    assert [room_of(m) for _, m in imported_modules(path)] == ["train", "models"]


# The export's standalone readers travel into the export directory: what each may import there.
READER_IMPORTS = {"export_format.py": {"json", "os", "numpy", "sentencepiece"},
                  "exported.py": {"os", "jax", "numpy", "safetensors", "export_format"},
                  "torch_model.py": {"json", "math", "os", "torch", "safetensors", "export_format"}}


@pytest.mark.parametrize("reader", sorted(READER_IMPORTS))
def test_export_readers_import_nothing_of_the_package(reader):
    tops = set()
    for node in ast.walk(ast.parse((PACKAGE / "serving" / reader).read_text())):
        if isinstance(node, ast.Import):
            tops |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            tops |= {a.name for a in node.names} if node.level else {node.module.split(".")[0]}
    assert tops - {"__future__"} <= READER_IMPORTS[reader], f"{reader} imports {sorted(tops - READER_IMPORTS[reader])}"
