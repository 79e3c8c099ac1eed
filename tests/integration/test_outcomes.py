"""What happened to a digest, in words (API, CLI, dashboard), and the command line's rough
edges an editor tripped over: bare `newsletter`, a preview after a send, its last line,
an import error said once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from newsletter.core import db
from newsletter.core.models import Delivery, DeliveryStatus, Digest, DigestState
from newsletter.subscribers.newsletters import get_by_slug
from tests.factories import add_article, add_reader, run_cli

NOW = datetime.now(UTC)


def a_digest_with_every_outcome() -> tuple[int, dict[str, int]]:
    readers = {
        name: add_reader(f"{name}@example.com")
        for name in ("sent", "fresh1", "fresh2", "left", "gone1", "gone2", "full", "later")
    }
    rows = {
        "sent": (DeliveryStatus.SENT, None),
        "fresh1": (DeliveryStatus.SKIPPED, "nothing new for this reader"),
        "fresh2": (DeliveryStatus.SKIPPED, "nothing new for this reader"),
        "left": (DeliveryStatus.SKIPPED, "no longer subscribed at send time"),
        "gone1": (DeliveryStatus.FAILED, "550 5.1.1 <gone1@example.com>: no such user"),
        "gone2": (DeliveryStatus.FAILED, "550 5.1.1 <gone2@example.com>: no such user"),
        "full": (DeliveryStatus.BOUNCED, "552 5.2.2 <full@example.com> mailbox full"),
        "later": (DeliveryStatus.QUEUED, "421 4.4.1 connection timed out, try later"),
    }
    with db.session_scope() as session:
        digest = Digest(
            newsletter_id=get_by_slug(session, "daily").id,
            state=DigestState.SENDING,
            since=NOW - timedelta(days=1),
            until=NOW,
            started_at=NOW,
        )
        session.add(digest)
        session.flush()
        for name, (status, error) in rows.items():
            session.add(
                Delivery(
                    digest_id=digest.id,
                    subscriber_id=readers[name],
                    status=status,
                    last_error=error,
                )
            )
        return digest.id, readers


def test_a_digests_outcomes_are_grouped_in_words_with_masked_examples(
    api: TestClient, clean_db: str
) -> None:
    digest_id, readers = a_digest_with_every_outcome()
    found = api.get(f"/api/digests/{digest_id}/outcomes")
    assert found.status_code == 200
    body = found.json()
    assert body["counts"] == {"sent": 1, "skipped": 3, "failed": 2, "bounced": 1, "waiting": 1}
    reasons = {(r["outcome"], r["reason"]): r for r in body["reasons"]}
    nothing_new = reasons[("skipped", next(w for o, w in reasons if w.startswith("Nothing new")))]
    assert nothing_new["count"] == 2
    gone = reasons[("failed", "The mailbox does not exist (5.1.1).")]
    assert gone["count"] == 2
    assert {e["address"] for e in gone["examples"]} == {"go…@example.com"}
    assert {e["subscriber_id"] for e in gone["examples"]} == {readers["gone1"], readers["gone2"]}
    assert ("bounced", "The mailbox is full (5.2.2).") in reasons
    assert any(o == "skipped" and w.startswith("Left before their turn") for o, w in reasons)
    assert any(
        o == "waiting"
        and w == "Waiting to be tried again: the receiving server did not answer (4.4.1)."
        for o, w in reasons
    )
    assert "gone1@example.com" not in found.text  # masked everywhere
    assert api.get("/api/digests/999999/outcomes").status_code == 404

    shown = run_cli("digest", "status", str(digest_id), database_url=clean_db)
    assert shown.returncode == 0, shown.stderr
    assert "2 failed: The mailbox does not exist (5.1.1)." in shown.stdout
    assert "e.g. go…@example.com, go…@example.com" in shown.stdout
    as_json = json.loads(
        run_cli("digest", "status", str(digest_id), "--json", database_url=clean_db).stdout
    )
    assert as_json["outcomes"]["counts"]["failed"] == 2


def test_an_empty_digest_says_nothing_to_send_and_why(api: TestClient) -> None:
    with db.session_scope() as session:
        digest = Digest(
            newsletter_id=get_by_slug(session, "daily").id,
            state=DigestState.EMPTY,
            note="Nobody is subscribed to this newsletter yet.",
        )
        session.add(digest)
        session.flush()
        digest_id = digest.id
    body = api.get(f"/api/digests/{digest_id}/outcomes").json()
    assert body == {
        "counts": {},
        "nothing_to_send": "Nobody is subscribed to this newsletter yet.",
        "reasons": [],
    }


def test_bare_newsletter_prints_the_whole_help(clean_db: str) -> None:
    bare = run_cli(database_url=clean_db)
    assert bare.returncode == 0 and bare.stderr == ""
    assert bare.stdout.startswith("Usage: ") and "newsletter [OPTIONS] COMMAND" in bare.stdout
    assert "Send, schedule, follow, pause, resume, cancel and preview digests." in bare.stdout
    commands = bare.stdout.split("Commands:", 1)[1]
    assert "..." not in commands  # no command's line cut short


def test_a_preview_after_a_send_says_nothing_new_and_how_to_look_further(
    clean_db: str, api: TestClient
) -> None:
    add_article("Macau reopens the bridge", hours_ago=3)
    text = run_cli("digest", "preview", "--format", "text", database_url=clean_db)
    assert text.returncode == 0, text.stderr
    assert text.stdout.endswith("\n") and not text.stdout.endswith("\n\n\n")
    with db.session_scope() as session:
        session.add(
            Digest(
                newsletter_id=get_by_slug(session, "daily").id,
                state=DigestState.SENT,
                since=NOW - timedelta(days=1),
                until=NOW - timedelta(minutes=1),
            )
        )
    after = run_cli("digest", "preview", database_url=clean_db)
    assert after.returncode == 1
    assert "Nothing new has been published since the last digest of Daily digest" in after.stderr
    assert "--since" in after.stderr and "between" not in after.stderr
    earlier = (NOW - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    looked = run_cli(
        "digest", "preview", "--since", earlier, "--format", "text", database_url=clean_db
    )
    assert looked.returncode == 0 and "Macau reopens the bridge" in looked.stdout
    over_api = api.get("/api/digests/preview")
    assert over_api.status_code == 409 and "Nothing new has been published" in over_api.text


def test_an_import_says_a_bad_address_once(clean_db: str, tmp_path: object) -> None:
    from pathlib import Path

    csv = Path(str(tmp_path)) / "readers.csv"
    csv.write_text("email\nbad-row\n")
    result = run_cli("subscribers", "import", str(csv), database_url=clean_db)
    said = result.stdout + result.stderr
    assert "'bad-row': That email address is not valid" in said, said
    assert said.count("not valid") == 1
