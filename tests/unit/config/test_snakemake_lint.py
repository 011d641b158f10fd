"""The rule files pass `snakemake --lint` (but for the software-definition lint, see
tests/snakemake_lint.py)."""

from snakemake_lint import snakemake_lints


def test_the_default_campaign_lints_clean():
    lints, text = snakemake_lints()
    assert lints == [], text
