"""rdsweep-bench's document: --write replaces the generated table and keeps the hand-written
analysis below its marker."""

from rdsweep.bench.cli import ANALYSIS, keep_analysis


def test_write_keeps_the_hand_written_analysis():
    previous = f"# old table\n| a | 1 |\n\n{ANALYSIS}\n## Why conv is slower\nprofile...\n"
    text = keep_analysis("# new table\n| a | 2 |\n", previous)
    assert text == f"# new table\n| a | 2 |\n\n{ANALYSIS}\n## Why conv is slower\nprofile...\n"
    assert "old table" not in text


def test_write_without_an_analysis_is_the_new_document_alone():
    assert keep_analysis("# new\n", None) == "# new\n"
    assert keep_analysis("# new\n", "# old, no analysis\n") == "# new\n"
