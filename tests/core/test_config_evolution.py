"""The evolution and delivery sections: the Contract's delivery YAML, and bad values named."""

from __future__ import annotations

import pytest
import yaml

from mendflow.core.config import MendflowConfig, validate_config
from mendflow.core.errors import ConfigError

CONTRACT_DELIVERY = """
delivery:
  remote: origin          # push mission branches here; null = no push
  forge: github           # github | gitlab | null (push only)
  forge_url: null         # API base URL; null = the public service
  repository: null        # owner/name on the forge; null = derived from the remote's URL
  token_block: null       # a saved Prefect block holding the token
  labels: [mendflow]
  group: cycle            # cycle | rule | patch: what one PR holds
  max_open_prs: 5
  max_prs_per_hour: null
  dashboard: false
"""


def test_the_contract_delivery_section_is_the_default():
    config = validate_config(yaml.safe_load(CONTRACT_DELIVERY))
    assert config.delivery == MendflowConfig().delivery
    assert config.evolution.interval_s == 300


@pytest.mark.parametrize(("data", "field"), [
    ({"delivery": {"group": "file"}}, "delivery.group"),
    ({"delivery": {"forge": "bitbucket"}}, "delivery.forge"),
    ({"delivery": {"max_open_prs": -1}}, "delivery.max_open_prs"),
    ({"evolution": {"interval_s": 600, "max_interval_s": 60}}, "evolution"),
    ({"evolution": {"generate": {"docs": True}}}, "evolution.generate.docs"),
])
def test_bad_values_are_named(data, field):
    with pytest.raises(ConfigError) as caught:
        validate_config(data)
    assert field in str(caught.value)
