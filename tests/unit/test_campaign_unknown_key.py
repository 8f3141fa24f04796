"""An unknown key in a campaign file lists the keys a campaign file has.

Before: the wording of pydantic's errors looked the allowed keys up in lab.toml's model,
so ``repeats = 2`` in a campaign said "expected one of lab, hosts, storage, ...".
"""

from __future__ import annotations

import pytest

from backend.experiments.campaign import parse_campaign
from backend.tomlfile import ConfigError


def test_an_unknown_key_names_the_campaign_files_keys() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_campaign('name = "c"\nscenarios = ["migrate-ping"]\nrepeats = 2\n', "c.toml")
    assert [str(e) for e in caught.value.errors] == [
        "c.toml:3: repeats: unknown key; expected one of name, title, scenarios, repetitions, "
        "quick, parameters (did you mean 'repetitions'?)"
    ]
