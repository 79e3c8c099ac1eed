"""Commit, then enqueue, on both databases: a job reaches the queue only once another
connection sees the work it follows; never after a rollback or a failed commit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.app import editors, jobs, readers
from newsletter.app.jobs import Job
from newsletter.app.unit_of_work import UnitOfWork
from newsletter.core.config import get_settings
from newsletter.core.models import Digest, Newsletter, Subscriber
from newsletter.core.validation import InvalidInput
from newsletter.subscribers.newsletters import ensure_default_newsletter
from newsletter.subscribers.store import SignupForm
from tests.fakes import BrokenQueue, RecordingQueue


class WitnessQueue(RecordingQueue):
    """Records, with each job, whether another connection already sees the reader it names:
    what a worker taking the job at that moment would find."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.reader_was_there: list[bool] = []

    def send(self, job: Job) -> None:
        with Session(self.engine) as other:
            self.reader_was_there.append(other.get(Subscriber, job.args[0]) is not None)
        super().send(job)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        ensure_default_newsletter(session, language="en", time_zone="Europe/Lisbon")
        session.commit()
        yield session


def count(session: Session, model: type[Subscriber] | type[Digest]) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_signup_is_committed_before_its_confirmation_is_queued(
    engine: Engine, session: Session
) -> None:
    queue = WitnessQueue(engine)
    work = UnitOfWork(session, queue)
    outcome = readers.subscribe(
        work, form=SignupForm(email="ana@example.com"), source="test", settings=get_settings()
    )
    assert queue.jobs == [jobs.send_confirmation(outcome.subscriber_id or 0, outcome.pending)]
    # The worker that takes the job finds the reader: the commit came first.
    assert queue.reader_was_there == [True]
    assert work.jobs == ()


def test_jobs_wait_for_the_commit_and_a_rollback_forgets_them(session: Session) -> None:
    queue = RecordingQueue()
    work = UnitOfWork(session, queue)
    session.add(Subscriber(email="rui@example.com", email_key="rui@example.com"))
    work.enqueue(jobs.send_confirmation(1))
    assert queue.jobs == []  # nothing leaves before the commit
    work.rollback()
    assert work.jobs == () and count(session, Subscriber) == 0
    work.commit()  # a later commit does not send what was rolled back
    assert queue.jobs == []


def test_a_commit_that_fails_queues_nothing(session: Session) -> None:
    queue = RecordingQueue()
    work = UnitOfWork(session, queue)
    session.add(Newsletter(slug="daily", name="Again", language="en", time_zone="UTC"))
    work.enqueue(jobs.tick())
    with pytest.raises(IntegrityError):
        work.commit()
    work.rollback()
    assert queue.jobs == []


def test_refused_input_changes_nothing_and_queues_nothing(session: Session) -> None:
    queue = RecordingQueue()
    work = UnitOfWork(session, queue)
    with pytest.raises(InvalidInput):
        readers.subscribe(
            work, form=SignupForm(email="not an address"), source="test", settings=get_settings()
        )
    work.commit()
    assert queue.jobs == [] and count(session, Subscriber) == 0


def test_the_tick_is_a_nudge_a_broker_that_is_down_fails_no_digest(session: Session) -> None:
    digest = editors.create_digest(UnitOfWork(session, BrokenQueue()), newsletter_slug="daily")
    assert count(session, Digest) == 1 and digest.id is not None


def test_a_job_that_matters_raises_when_the_broker_is_down_after_the_commit(
    session: Session,
) -> None:
    work = UnitOfWork(session, BrokenQueue())
    with pytest.raises(ConnectionRefusedError):
        readers.subscribe(
            work, form=SignupForm(email="ze@example.com"), source="test", settings=get_settings()
        )
    session.rollback()
    assert count(session, Subscriber) == 1  # committed: the sweep of pending readers is theirs


def test_the_api_answers_a_digest_made_while_the_broker_is_down(clean_db: str) -> None:
    from newsletter.web.app import create_app

    token = get_settings().admin_token
    with TestClient(create_app(queue=BrokenQueue())) as client:
        response = client.post(
            "/api/digests", json={}, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 201, response.text
