"""The CLI starts without the heavy libraries: they load only when something uses them."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "sentence_transformers", "transformers", "chromadb", "openai",
         "langchain_openai")


def loaded_after(code: str, watched: tuple[str, ...] = HEAVY) -> list[str]:
    """The ``watched`` modules a fresh interpreter has imported after running ``code``."""
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps(sorted(m for m in {watched!r} if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_cli_import_loads_no_heavy_library() -> None:
    assert loaded_after("import orchestrator.cli.app") == []


def test_model_specs_and_retrieval_modules_load_no_heavy_library() -> None:
    code = ("from orchestrator.models import get_model, parse_model_spec\n"
            "parse_model_spec('openai:gpt-4o-mini')\n"
            "get_model('fake')\n"
            "import orchestrator.retrieval.search, orchestrator.retrieval.tool\n"
            "from orchestrator.retrieval.embedders import get_embedder\n"
            "get_embedder('minilm')\n")
    assert loaded_after(code) == []


def test_a_provider_module_is_imported_only_when_its_prefix_is_used() -> None:
    providers = ("orchestrator.models.fake", "orchestrator.models.cassette",
                 "orchestrator.models.openai_chat")
    assert loaded_after("from orchestrator.models import parse_model_spec\n"
                        "parse_model_spec('openai:gpt-4o-mini')", providers) == [
        "orchestrator.models.openai_chat"]
    assert loaded_after("from orchestrator.models import known_providers\n"
                        "known_providers()", providers) == []
