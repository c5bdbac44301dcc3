"""Helpers of the heal tests: a small real application with a production bug, its
logs, and the model replies (analysis + reproduction test + fix) the fake API serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.fakes import fake_messages_api as api
from tests.fakes.server import ScriptedReply
from tests.helpers.target import target_python

SHOP_FILES = {
    "pyproject.toml": """
        [project]
        name = "shop"
        version = "0.1.0"
    """,
    "shop/__init__.py": "",
    "shop/stats.py": '''
        """Statistics of the orders."""


        def mean(values):
            """The mean of the values."""
            return sum(values) / len(values)


        def spread(values):
            """The largest minus the smallest value."""
            return max(values) - min(values)
    ''',
    "shop/report.py": '''
        """The daily report."""

        from shop.stats import mean


        def daily(orders):
            """The mean order amount of the day."""
            return {"mean": mean([o["amount"] for o in orders])}
    ''',
    "tests/__init__.py": "",
    "tests/test_stats.py": '''
        from shop.report import daily
        from shop.stats import mean, spread


        def test_mean():
            assert mean([1, 2, 3]) == 2


        def test_spread():
            assert spread([1, 5]) == 4


        def test_daily():
            assert daily([{"amount": 4}, {"amount": 6}]) == {"mean": 5}
    ''',
}

PRODUCTION_LOG = """\
2024-06-01 09:00:00,001 INFO shop: report requested
2024-06-01 09:00:00,120 ERROR shop: report failed
Traceback (most recent call last):
  File "/usr/lib/python3.11/site-packages/flask/app.py", line 880, in full_dispatch_request
    rv = self.dispatch_request()
  File "/srv/shop-release-42/shop/report.py", line 8, in daily
    return {"mean": mean([o["amount"] for o in orders])}
  File "/srv/shop-release-42/shop/stats.py", line 6, in mean
    return sum(values) / len(values)
ZeroDivisionError: division by zero
"""

FIX = {"path": "shop/stats.py", "search": "    return sum(values) / len(values)\n",
       "replace": "    if not values:\n        return 0.0\n    return sum(values) / len(values)\n"}
GOOD_TEST = {"path": "tests/test_heal_mean.py", "search": "", "replace":
             "from shop.report import daily\n\n\ndef test_daily_without_orders():\n"
             "    assert daily([]) == {\"mean\": 0.0}\n"}
PASSING_TEST = {"path": "tests/test_heal_mean.py", "search": "", "replace":
                "from shop.stats import mean\n\n\ndef test_mean_of_one():\n"
                "    assert mean([3]) == 3\n"}


def production_log(tmp_path: Path, repeats: int = 3) -> Path:
    log = tmp_path / "shop.log"
    log.write_text(PRODUCTION_LOG * repeats)
    return log


def heal_reply(edits: list[dict[str, str]], *, category: str = "logic",
               confidence: str = "high", fixable: bool = True,
               root_cause: str = "mean() divides by the length of an empty list") -> ScriptedReply:
    return api.tool_reply(api.analysis(category=category, confidence=confidence,
                                       fixable=fixable, root_cause=root_cause,
                                       affected_files=["shop/stats.py"]), edits)


def heal_config(tmp_path: Path, fake: api.FakeMessagesAPI, **sections: Any) -> Path:
    data: dict[str, Any] = {
        "environment": {"type": "interpreter", "python": target_python()},
        "tools": {"mypy": {"enabled": False}},
        "fixer": {"type": "anthropic", "base_url": fake.root_url, "model": "claude-test"},
    }
    for name, section in sections.items():
        data[name] = section if name == "fixer" else {**data.get(name, {}), **section}
    path = tmp_path / "mendflow.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


APP_FILES = {
    "shop/__init__.py": "",
    "shop/catalog.py": '''
        """The catalog: plugins, titles, prices."""


        def load_plugin():
            """Import the pricing plugin named in the settings."""
            import shop_pricing_plugin  # noqa: F401  (not installed in production)


        def title(order):
            """The order's title."""
            return order.title.upper()


        def price(prices, sku):
            """The price of a product."""
            return prices[sku]


        def mean(values):
            """The mean of the values."""
            return sum(values) / len(values)
    ''',
}

APP_MAIN = '''
import asyncio, json, logging, os, sys, threading, time
import mendflow.heal
from shop import catalog

hook = mendflow.heal.install(repository=os.environ["APP_REPO"],
                             api_url=os.environ.get("APP_API") or None,
                             spool_dir=os.environ["APP_SPOOL"], logging_handler=True,
                             retry_s=0.5)
log = logging.getLogger("app")


def request(order):
    try:
        return catalog.title(order)
    except AttributeError:
        log.exception("request failed")   # AttributeError, reported by the logging handler
        return "?"


async def main():
    hook.watch(asyncio.get_running_loop())
    asyncio.get_running_loop().call_soon(catalog.load_plugin)   # ImportError in a callback
    await asyncio.sleep(0.05)


results = [request(None) for _ in range(3)]      # two repeats: rate-limited
asyncio.run(main())
worker = threading.Thread(target=catalog.price, args=({}, "sku-1"))   # KeyError in a thread
worker.start(); worker.join()
hook.flush(5)
print(json.dumps({"results": results, "stats": vars(hook.stats)}), flush=True)
catalog.mean([])                                 # ZeroDivisionError: uncaught
'''


APP_FIXES = {
    "AttributeError": ("title", [
        {"path": "tests/test_heal_title.py", "search": "", "replace":
         "from shop.catalog import title\n\n\ndef test_title_without_order():\n"
         "    assert title(None) == \"\"\n"},
        {"path": "shop/catalog.py", "search": "    return order.title.upper()\n",
         "replace": "    if order is None:\n        return \"\"\n    return order.title.upper()\n"}]),
    "ModuleNotFoundError": ("load_plugin", [
        {"path": "tests/test_heal_plugin.py", "search": "", "replace":
         "from shop.catalog import load_plugin\n\n\ndef test_plugin_missing():\n"
         "    assert load_plugin() is None\n"},
        {"path": "shop/catalog.py",
         "search": "    import shop_pricing_plugin  # noqa: F401  (not installed in production)\n",
         "replace": "    try:\n        import shop_pricing_plugin  # noqa: F401\n"
                    "    except ImportError:\n        return None\n    return True\n"}]),
    "KeyError": ("price", [
        {"path": "tests/test_heal_price.py", "search": "", "replace":
         "from shop.catalog import price\n\n\ndef test_unknown_sku():\n"
         "    assert price({}, \"sku-1\") is None\n"},
        {"path": "shop/catalog.py", "search": "    return prices[sku]\n",
         "replace": "    return prices.get(sku)\n"}]),
    "ZeroDivisionError": ("mean", [
        {"path": "tests/test_heal_mean.py", "search": "", "replace":
         "from shop.catalog import mean\n\n\ndef test_mean_of_nothing():\n"
         "    assert mean([]) == 0.0\n"},
        {"path": "shop/catalog.py", "search": "    return sum(values) / len(values)\n",
         "replace": "    if not values:\n        return 0.0\n"
                    "    return sum(values) / len(values)\n"}]),
}
"""Per exception type of the application: the function it is raised in, and the model's
edits (a reproduction test and a fix)."""


def app_responder(request):
    """The fake model: the reply for the exception named in the request's traceback."""
    content = request.json["messages"][0]["content"]
    text = content if isinstance(content, str) else "".join(b.get("text", "") for b in content)
    for kind, (_, edits) in APP_FIXES.items():
        if f"{kind}:" in text or f"\n{kind}\n" in text:
            return heal_reply(edits, root_cause=f"{kind} not handled")
    return None
