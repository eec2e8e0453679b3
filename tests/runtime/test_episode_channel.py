"""The episode channel over real loopback TCP: concurrent episodes reply as they finish, an episode's
error comes back as ``EpisodeFailed``, a wrong token or an oversized frame is refused, and a dead
actor fails every pending call with ``ChannelClosed``."""

from __future__ import annotations

import asyncio
import struct

import pytest

from interleaf.runtime.jobs.episode_channel import ChannelClosed, EpisodeChannel, EpisodeFailed, serve_episodes

TOKEN = "s3cret-token"


async def run(job_id: str, episode: int, attempt: int) -> str:
    if job_id == "boom":
        raise ValueError(f"episode {episode} exploded")
    if job_id == "hang":
        await asyncio.Event().wait()
    await asyncio.sleep(0.05 * (3 - episode))  # later episodes finish first
    return f'{{"job_id": "{job_id}", "episode": {episode}, "attempt": {attempt}}}'


async def serve() -> tuple[asyncio.Server, int]:
    server = await serve_episodes(run, TOKEN, "127.0.0.1")
    return server, server.sockets[0].getsockname()[1]


async def test_concurrent_episodes_reply_as_they_finish_to_the_right_caller() -> None:
    server, port = await serve()
    channel = await EpisodeChannel.connect("127.0.0.1", port, TOKEN)
    order: list[int] = []

    async def one(episode: int) -> str:
        out = await channel.run_episode("job-a", episode, 2)
        order.append(episode)
        return out

    outs = await asyncio.gather(*(one(e) for e in range(3)))
    assert outs == [f'{{"job_id": "job-a", "episode": {e}, "attempt": 2}}' for e in range(3)]
    assert order == [2, 1, 0]
    channel.close()
    server.close()


async def test_an_episode_error_comes_back_named_and_the_channel_stays_open() -> None:
    server, port = await serve()
    channel = await EpisodeChannel.connect("127.0.0.1", port, TOKEN)
    with pytest.raises(EpisodeFailed, match="ValueError: episode 5 exploded"):
        await channel.run_episode("boom", 5, 1)
    assert "job-b" in await channel.run_episode("job-b", 2, 1)
    channel.close()
    server.close()


async def test_a_wrong_token_is_refused() -> None:
    server, port = await serve()
    channel = await EpisodeChannel.connect("127.0.0.1", port, "not-the-token")
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(channel.run_episode("job-a", 0, 1), 5)
    server.close()


async def test_an_oversized_request_closes_the_connection() -> None:
    server, port = await serve()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(struct.pack(">I", len(TOKEN)) + TOKEN.encode() + struct.pack(">IQ", 10**9, 1))
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without reading a gigabyte
    writer.close()
    server.close()


async def test_a_dead_actor_fails_every_pending_call_and_later_ones() -> None:
    server, port = await serve()
    channel = await EpisodeChannel.connect("127.0.0.1", port, TOKEN)
    pending = [asyncio.create_task(channel.run_episode("hang", e, 1)) for e in range(3)]
    await asyncio.sleep(0.1)
    channel.close("RayActorError: the actor died")  # what the runner's watcher does
    for task in pending:
        with pytest.raises(ChannelClosed, match="the actor died"):
            await task
    with pytest.raises(ChannelClosed):
        await channel.run_episode("job-a", 0, 1)
    server.close()


async def test_the_connection_lost_fails_pending_calls() -> None:
    connections: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await reader.read(100)  # hello and the request, then the "actor" dies
        writer.transport.abort()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    channel = await EpisodeChannel.connect("127.0.0.1", server.sockets[0].getsockname()[1], TOKEN)
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(channel.run_episode("job-a", 0, 1), 5)
    server.close()


def test_the_environment_switch_names_a_bad_value() -> None:
    from interleaf.settings import episode_channel

    assert episode_channel({}) is True and episode_channel({"INTERLEAF_EPISODE_CHANNEL": "0"}) is False
    assert episode_channel({"INTERLEAF_EPISODE_CHANNEL": "on"}) is True
    with pytest.raises(ValueError, match="INTERLEAF_EPISODE_CHANNEL='maybe'"):
        episode_channel({"INTERLEAF_EPISODE_CHANNEL": "maybe"})


async def test_a_worker_reopening_its_channel_takes_only_the_new_token() -> None:
    """``EpisodeWorker.open_channel`` in process (no Ray): a second call serves the new token only; an
    episode of a job the worker was not prepared for comes back named."""
    from interleaf.runtime.jobs.workers import EpisodeWorker

    worker = EpisodeWorker(["http://127.0.0.1:9"])
    await worker.open_channel("old-token", "127.0.0.1")
    host, port = await worker.open_channel("new-token", "127.0.0.1")
    assert host == "127.0.0.1"
    channel = await EpisodeChannel.connect(host, port, "new-token")
    with pytest.raises(EpisodeFailed, match=r"KeyError: .*not prepared"):
        await channel.run_episode("job-x", 0, 1)
    stale = await EpisodeChannel.connect(host, port, "old-token")
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(stale.run_episode("job-x", 0, 1), 5)
    channel.close()
    stale.close()
    await worker.aclose()
    await asyncio.wait_for(worker.watch(), 1)  # closed: the runner's pending watch() returns


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


async def run_odd(job_id: str, episode: int, attempt: int) -> str:
    if job_id == "surrogate":
        raise OSError("cannot open http://127.0.0.1:1/\ud800")
    if job_id == "unprintable":
        raise _Unprintable()
    return '{"answer": "\ud800"}'  # a trajectory UTF-8 cannot carry


async def test_an_answer_utf8_cannot_encode_still_comes_back_as_a_failure() -> None:
    """The reply used to be encoded outside the error handling: a lone surrogate in an episode's error
    killed the reply and the runner waited for it forever (the job, then the queue, hung)."""
    server = await serve_episodes(run_odd, TOKEN, "127.0.0.1")
    channel = await EpisodeChannel.connect("127.0.0.1", server.sockets[0].getsockname()[1], TOKEN)
    with pytest.raises(EpisodeFailed) as failed:
        await asyncio.wait_for(channel.run_episode("surrogate", 0, 1), 5)
    assert str(failed.value) == "OSError: cannot open http://127.0.0.1:1/\\ud800"
    with pytest.raises(EpisodeFailed, match=r"_Unprintable: \(its message could not be read: RuntimeError\)"):
        await asyncio.wait_for(channel.run_episode("unprintable", 0, 1), 5)
    with pytest.raises(EpisodeFailed, match="UnicodeEncodeError"):
        await asyncio.wait_for(channel.run_episode("odd-trajectory", 0, 1), 5)
    channel.close()
    server.close()
