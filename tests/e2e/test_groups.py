"""Groups end to end on real nodes: roles, membership, edits, deletes, receipts, typing, sync.

Every membership or settings change is a ``system`` message with the next seq,
and edits and deletes are messages of their own kinds that also update their
target (ARCHITECTURE.md section 5), so most tests check both what the sockets
receive and what history and sync say afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from client import ParleyApiError, ParleyClient
from tests.support.clients import signed_in_client
from tests.support.server import ServerProcess

# Long enough for a stray emit on a local node to have arrived.
QUIET = 0.4


# -- helpers ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def signed_in(
    node: ServerProcess, *names: str, connect: bool = True
) -> AsyncIterator[list[ParleyClient]]:
    """Clients signed in concurrently on ``node``, closed afterwards."""
    results = await asyncio.gather(
        *(signed_in_client(node, name, connect=connect) for name in names),
        return_exceptions=True,
    )
    clients = [r for r in results if isinstance(r, ParleyClient)]
    try:
        for result in results:
            if isinstance(result, BaseException):
                raise result
        yield clients
    finally:
        for client in clients:
            await client.close()


def uid(client: ParleyClient) -> str:
    assert client.user_id is not None
    return client.user_id


async def new_group(
    owner: ParleyClient, members: list[ParleyClient], title: str = "crew"
) -> dict[str, Any]:
    """A plaintext group; its "created" system message is taken off every connected socket."""
    group = await owner.create_group(title, [uid(m) for m in members], mode="plaintext")
    await expect_system([c for c in (owner, *members) if c.connected], "created")
    return group


async def expect_system(clients: list[ParleyClient], event: str, **fields: Any) -> dict[str, Any]:
    """Each client's next message is the same system message of ``event`` with ``fields``."""
    received = [await c.next_message(timeout=5) for c in clients]
    for message in received:
        assert message["kind"] == "system", message
        assert message["body"]["event"] == event, message
        for key, value in fields.items():
            assert message["body"][key] == value, (key, message)
    assert len({m["id"] for m in received}) == 1, "one message, fanned out"
    return received[0]


async def expect_message(clients: list[ParleyClient], ack: dict[str, Any]) -> None:
    """Each client's next message:new is the acked message."""
    for client in clients:
        message = await client.next_message(timeout=5)
        assert message["id"] == ack["id"], (message, ack)
        assert message["seq"] == ack["seq"]


async def expect_event(client: ParleyClient, name: str) -> dict[str, Any]:
    data = await client.next_event(name, 5)
    assert isinstance(data, dict)
    return data


async def assert_quiet(*clients: ParleyClient) -> None:
    """Nothing more arrives on these sockets (messages or other events)."""
    await asyncio.sleep(QUIET)
    for client in clients:
        assert client.messages.empty(), client.messages.get_nowait()
        while not client.events.empty():
            event, data = client.events.get_nowait()
            assert event == "presence:updated", (event, data)


async def refused(call: Awaitable[Any]) -> ParleyApiError:
    """The API error ``call`` fails with."""
    with pytest.raises(ParleyApiError) as info:
        await call
    return info.value


async def raw(client: ParleyClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """An authenticated request whose response is returned as is (status included)."""
    headers = {"Authorization": f"Bearer {client.access_token}"}
    return await client.http.request(method, path, headers=headers, **kwargs)


async def conversation(client: ParleyClient, conversation_id: str) -> dict[str, Any]:
    result: dict[str, Any] = await client.request("GET", f"/v1/conversations/{conversation_id}")
    return result


def roles(conv: dict[str, Any]) -> dict[str, str]:
    return {m["user_id"]: m["role"] for m in conv["members"]}


async def history_by_id(client: ParleyClient, conversation_id: str) -> dict[str, dict[str, Any]]:
    page = await client.history(conversation_id, limit=100)
    return {m["id"]: m for m in page["messages"]}


async def http_sync(client: ParleyClient, body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = await client.request("POST", "/v1/sync", json=body)
    return result


# -- creating and talking -----------------------------------------------------------


async def test_group_creation_reaches_all_four_members(sqlite_node: ServerProcess) -> None:
    """Owner + 3: all four sockets get the "created" system message (seq 1, no sender)."""
    async with signed_in(sqlite_node, "owner", "ann", "ben", "cat") as (owner, *others):
        group = await owner.create_group("crew", [uid(o) for o in others], mode="plaintext")
        assert (group["kind"], group["mode"], group["title"]) == ("group", "plaintext", "crew")
        created = await expect_system([owner, *others], "created", by=uid(owner), title="crew")
        assert created["conversation_id"] == group["id"]
        assert created["seq"] == 1 and created["sender_id"] is None
        assert sorted(created["body"]["member_ids"]) == sorted(uid(o) for o in others)
        await assert_quiet(owner, *others)


async def test_conversation_list_shows_the_creator_as_owner(sqlite_node: ServerProcess) -> None:
    """GET /v1/conversations lists the new group for every member, the creator as owner."""
    async with signed_in(sqlite_node, "owner", "ann", "ben", "cat", connect=False) as clients:
        owner, *others = clients
        group = await owner.create_group("crew", [uid(o) for o in others], mode="plaintext")
        expected = {uid(owner): "owner", **{uid(o): "member" for o in others}}
        for client in clients:
            listed = (await client.conversations())["conversations"]
            assert [c["id"] for c in listed] == [group["id"]]
            assert roles(listed[0]) == expected
            assert listed[0]["last_seq"] == 1 and listed[0]["kind"] == "group"


async def test_messages_from_any_member_reach_all_others(sqlite_node: ServerProcess) -> None:
    """Each of four members sends once; every member's socket gets all four, in seq order."""
    async with signed_in(sqlite_node, "owner", "ann", "ben", "cat") as clients:
        owner, *others = clients
        group = await new_group(owner, others)
        acks = []
        for sender in clients:
            ack = await sender.send_text(group["id"], f"hi from {sender.device_name}")
            acks.append(ack)
            await expect_message(clients, ack)
        assert [a["seq"] for a in acks] == [2, 3, 4, 5]
        assert [a["sender_id"] for a in acks] == [uid(c) for c in clients]
        await assert_quiet(*clients)


# -- roles ------------------------------------------------------------------------


async def test_plain_member_cannot_manage_the_group(sqlite_node: ServerProcess) -> None:
    """A member's add, remove, rename and set-role are 403 not_allowed and change nothing."""
    async with signed_in(sqlite_node, "owner", "ann", "ben", "cat") as clients:
        owner, ann, ben, cat = clients
        group = await new_group(owner, [ann, ben])
        gid = group["id"]
        attempts: list[Callable[[], Awaitable[Any]]] = [
            lambda: ann.add_members(gid, [uid(cat)]),
            lambda: ann.remove_member(gid, uid(ben)),
            lambda: ann.update_conversation(gid, title="mine now"),
            lambda: ann.set_role(gid, uid(ben), "admin"),
        ]
        for attempt in attempts:
            error = await refused(attempt())
            assert (error.status, error.code) == (403, "not_allowed"), error
        after = await conversation(owner, gid)
        assert after["title"] == "crew" and after["last_seq"] == 1
        assert roles(after) == {uid(owner): "owner", uid(ann): "member", uid(ben): "member"}
        await assert_quiet(*clients)


async def test_admin_adds_and_removes_members(sqlite_node: ServerProcess) -> None:
    """An admin the owner appointed adds and removes members; each change reaches everyone."""
    async with signed_in(sqlite_node, "owner", "adam", "ben", "cat") as clients:
        owner, adam, ben, cat = clients
        group = await new_group(owner, [adam, ben])
        gid = group["id"]
        await owner.set_role(gid, uid(adam), "admin")
        await expect_system([owner, adam, ben], "role_changed", user_id=uid(adam), role="admin")

        await adam.add_members(gid, [uid(cat)])
        await expect_system(
            [owner, adam, ben, cat], "members_added", user_ids=[uid(cat)], by=uid(adam)
        )
        await adam.remove_member(gid, uid(ben))
        await expect_system(
            [owner, adam, cat, ben], "member_removed", user_id=uid(ben), by=uid(adam)
        )
        after = await conversation(owner, gid)
        assert roles(after) == {uid(owner): "owner", uid(adam): "admin", uid(cat): "member"}
        assert after["last_seq"] == 4
        await assert_quiet(*clients)


async def test_admin_cannot_remove_the_owner_or_another_admin(
    sqlite_node: ServerProcess,
) -> None:
    """An admin removing the owner or another admin is refused 403 not_allowed; nobody goes."""
    async with signed_in(sqlite_node, "owner", "adam", "ada") as clients:
        owner, adam, ada = clients
        group = await new_group(owner, [adam, ada])
        gid = group["id"]
        for admin in (adam, ada):
            await owner.set_role(gid, uid(admin), "admin")
            await expect_system(clients, "role_changed", user_id=uid(admin), role="admin")
        errors = [
            await refused(adam.remove_member(gid, uid(owner))),
            await refused(adam.remove_member(gid, uid(ada))),
        ]
        after = await conversation(owner, gid)
        assert roles(after) == {uid(owner): "owner", uid(adam): "admin", uid(ada): "admin"}
        assert after["last_seq"] == 3
        await assert_quiet(*clients)
        assert [(e.status, e.code) for e in errors] == [(403, "not_allowed")] * 2


async def test_owner_removes_an_admin(sqlite_node: ServerProcess) -> None:
    """The owner may remove an admin; all members, and the removed admin, are told."""
    async with signed_in(sqlite_node, "owner", "adam", "ben") as clients:
        owner, adam, ben = clients
        group = await new_group(owner, [adam, ben])
        gid = group["id"]
        await owner.set_role(gid, uid(adam), "admin")
        await expect_system(clients, "role_changed", user_id=uid(adam), role="admin")
        await owner.remove_member(gid, uid(adam))
        await expect_system(clients, "member_removed", user_id=uid(adam), by=uid(owner))
        assert roles(await conversation(owner, gid)) == {uid(owner): "owner", uid(ben): "member"}
        await assert_quiet(*clients)


async def test_handing_ownership_makes_the_old_owner_an_admin(
    sqlite_node: ServerProcess,
) -> None:
    """Role "owner" hands ownership over: the old owner becomes an admin without owner powers."""
    async with signed_in(sqlite_node, "owner", "ann", "ben") as clients:
        owner, ann, ben = clients
        group = await new_group(owner, [ann, ben])
        gid = group["id"]
        result = await owner.set_role(gid, uid(ann), "owner")
        await expect_system(clients, "role_changed", user_id=uid(ann), role="owner")
        expected = {uid(owner): "admin", uid(ann): "owner", uid(ben): "member"}
        assert roles(result) == expected
        assert roles(await conversation(ben, gid)) == expected

        error = await refused(owner.set_role(gid, uid(ben), "admin"))
        assert (error.status, error.code) == (403, "not_allowed")
        await ann.set_role(gid, uid(ben), "admin")
        await expect_system(clients, "role_changed", user_id=uid(ben), role="admin", by=uid(ann))
        await assert_quiet(*clients)


async def test_admin_rename_is_a_system_message_to_everyone(sqlite_node: ServerProcess) -> None:
    """An admin renames the group; every member gets the "updated" system message."""
    async with signed_in(sqlite_node, "owner", "adam", "ben") as clients:
        owner, adam, ben = clients
        group = await new_group(owner, [adam, ben])
        gid = group["id"]
        await owner.set_role(gid, uid(adam), "admin")
        await expect_system(clients, "role_changed", user_id=uid(adam), role="admin")
        renamed = await adam.update_conversation(gid, title="new name", topic="plans")
        assert (renamed["title"], renamed["topic"]) == ("new name", "plans")
        await expect_system(clients, "updated", title="new name", topic="plans", by=uid(adam))
        assert (await conversation(ben, gid))["title"] == "new name"
        await assert_quiet(*clients)


async def test_membership_change_answers_with_the_conversation_after_it(
    sqlite_node: ServerProcess,
) -> None:
    """add_members and set_role answer with last_seq counting their own system message."""
    async with signed_in(sqlite_node, "owner", "ann", "ben", connect=False) as (owner, ann, ben):
        gid = (await owner.create_group("crew", [uid(ann)], mode="plaintext"))["id"]
        added = await owner.add_members(gid, [uid(ben)])
        promoted = await owner.set_role(gid, uid(ann), "admin")
        renamed = await owner.update_conversation(gid, title="renamed")
        assert renamed["last_seq"] == 4
        assert (added["last_seq"], promoted["last_seq"]) == (2, 3)


# -- removal and leaving ------------------------------------------------------------


async def test_removed_member_stops_receiving_at_once(sqlite_node: ServerProcess) -> None:
    """After removal the removed socket gets the member_removed message and nothing later."""
    async with signed_in(sqlite_node, "owner", "ann", "ben") as clients:
        owner, ann, ben = clients
        group = await new_group(owner, [ann, ben])
        gid = group["id"]
        await owner.remove_member(gid, uid(ben))
        await expect_system([owner, ann, ben], "member_removed", user_id=uid(ben))
        ack = await owner.send_text(gid, "after ben left")
        await expect_message([owner, ann], ack)
        await ann.typing(gid)
        await expect_event(owner, "typing")
        await ann.mark_read(gid, ack["seq"])
        await expect_event(owner, "receipt:updated")
        await expect_event(ann, "receipt:updated")
        await assert_quiet(*clients)


async def test_removed_member_can_neither_read_nor_send(sqlite_node: ServerProcess) -> None:
    """A removed member gets 404 conversation_not_found on get, history and send."""
    async with signed_in(sqlite_node, "owner", "ann", "ben") as clients:
        owner, ann, ben = clients
        group = await new_group(owner, [ann, ben])
        gid = group["id"]
        await owner.remove_member(gid, uid(ben))
        await expect_system(clients, "member_removed", user_id=uid(ben))

        for call in (
            lambda: ben.history(gid),
            lambda: conversation(ben, gid),
            lambda: ben.request(
                "POST",
                f"/v1/conversations/{gid}/messages",
                json={"client_msg_id": "late", "body": {"text": "still here?"}},
            ),
        ):
            error = await refused(call())
            assert (error.status, error.code) == (404, "conversation_not_found")
        socket_error = await refused(ben.send_text(gid, "still here?"))
        assert socket_error.code == "conversation_not_found"
        assert (await conversation(owner, gid))["last_seq"] == 2
        assert gid not in [c["id"] for c in (await ben.conversations())["conversations"]]
        await assert_quiet(*clients)


async def test_removed_member_sync_lists_the_conversation_as_removed(
    sqlite_node: ServerProcess,
) -> None:
    """A removed member's sync returns the conversation in `removed` and none of its messages."""
    async with signed_in(sqlite_node, "owner", "ann", "ben") as clients:
        owner, ann, ben = clients
        group = await new_group(owner, [ann, ben])
        gid = group["id"]
        await owner.remove_member(gid, uid(ben))
        await expect_system(clients, "member_removed", user_id=uid(ben))
        await owner.send_text(gid, "not for ben")

        page = await http_sync(ben, {"positions": {gid: 1}})
        assert page["removed"] == [gid]
        assert gid not in [c["conversation_id"] for c in page["conversations"]]
        positions = {gid: 1}
        assert await ben.sync(positions) == []
        assert positions == {}, "the SDK forgets a removed conversation"


async def test_member_leaves_with_204_and_a_system_message(sqlite_node: ServerProcess) -> None:
    """DELETE of your own membership is 204; everyone, the leaver too, gets member_left."""
    async with signed_in(sqlite_node, "owner", "ann", "ben") as clients:
        owner, ann, ben = clients
        group = await new_group(owner, [ann, ben])
        gid = group["id"]
        response = await raw(ann, "DELETE", f"/v1/conversations/{gid}/members/{uid(ann)}")
        assert response.status_code == 204 and response.content == b""
        await expect_system(clients, "member_left", user_id=uid(ann), by=uid(ann))
        assert roles(await conversation(owner, gid)) == {uid(owner): "owner", uid(ben): "member"}
        error = await refused(ann.history(gid))
        assert error.code == "conversation_not_found"
        ack = await ben.send_text(gid, "bye ann")
        await expect_message([owner, ben], ack)
        await assert_quiet(*clients)


async def test_leaving_owner_hands_ownership_to_longest_standing_admin(
    sqlite_node: ServerProcess,
) -> None:
    """The owner leaves: the admin who joined first becomes owner, before older plain members."""
    async with signed_in(sqlite_node, "owner", "mia", "cal", "dan") as clients:
        owner, mia, cal, dan = clients
        group = await new_group(owner, [mia])  # mia: the longest-standing, a plain member
        gid = group["id"]
        await owner.add_members(gid, [uid(cal)])
        await expect_system([owner, mia, cal], "members_added")
        await owner.add_members(gid, [uid(dan)])
        await expect_system(clients, "members_added")
        # dan is made admin first, but cal joined before him.
        for admin in (dan, cal):
            await owner.set_role(gid, uid(admin), "admin")
            await expect_system(clients, "role_changed", role="admin")

        await owner.remove_member(gid, uid(owner))
        await expect_system(clients, "member_left", user_id=uid(owner))
        after = await conversation(mia, gid)
        assert roles(after) == {uid(mia): "member", uid(cal): "owner", uid(dan): "admin"}
        await cal.set_role(gid, uid(mia), "admin")
        await expect_system([mia, cal, dan], "role_changed", user_id=uid(mia), by=uid(cal))
        await assert_quiet(*clients)


async def test_leaving_owner_without_admins_hands_ownership_to_longest_standing_member(
    sqlite_node: ServerProcess,
) -> None:
    """With no admin, the owner's leaving makes the member who joined first the owner."""
    async with signed_in(sqlite_node, "owner", "mia", "cal") as clients:
        owner, mia, cal = clients
        group = await new_group(owner, [mia])
        gid = group["id"]
        await owner.add_members(gid, [uid(cal)])
        await expect_system(clients, "members_added")
        await owner.remove_member(gid, uid(owner))
        await expect_system(clients, "member_left", user_id=uid(owner))
        assert roles(await conversation(cal, gid)) == {uid(mia): "owner", uid(cal): "member"}


# -- direct conversations and modes -------------------------------------------------


async def test_direct_conversation_is_not_a_group(sqlite_node: ServerProcess) -> None:
    """Adding, removing, renaming, roles and leaving on a direct chat are 422 not_a_group."""
    async with signed_in(sqlite_node, "alice", "bob", "carl") as clients:
        alice, bob, carl = clients
        direct = await alice.open_direct(uid(bob), mode="plaintext")
        did = direct["id"]
        assert direct["kind"] == "direct"
        attempts: list[Callable[[], Awaitable[Any]]] = [
            lambda: alice.add_members(did, [uid(carl)]),
            lambda: alice.remove_member(did, uid(bob)),
            lambda: alice.remove_member(did, uid(alice)),
            lambda: alice.update_conversation(did, title="us"),
            lambda: alice.set_role(did, uid(bob), "admin"),
        ]
        for attempt in attempts:
            error = await refused(attempt())
            assert (error.status, error.code) == (422, "not_a_group"), error
        after = await conversation(bob, did)
        assert after["title"] == "" and after["last_seq"] == 0
        assert roles(after) == {uid(alice): "member", uid(bob): "member"}
        await assert_quiet(*clients)


async def test_plaintext_and_encrypted_direct_chats_are_distinct(
    sqlite_node: ServerProcess,
) -> None:
    """One pair has one encrypted (the default) and one plaintext direct chat, each stable."""
    async with signed_in(sqlite_node, "alice", "bob", connect=False) as (alice, bob):
        encrypted = await alice.request(
            "POST", "/v1/conversations/direct", json={"user_id": uid(bob)}
        )
        plaintext = await alice.open_direct(uid(bob), mode="plaintext")
        assert encrypted["mode"] == "encrypted" and plaintext["mode"] == "plaintext"
        assert encrypted["id"] != plaintext["id"]
        assert (await bob.open_direct(uid(alice), mode="encrypted"))["id"] == encrypted["id"]
        assert (await bob.open_direct(uid(alice), mode="plaintext"))["id"] == plaintext["id"]
        listed = {c["id"] for c in (await bob.conversations())["conversations"]}
        assert listed == {encrypted["id"], plaintext["id"]}


async def test_text_to_an_encrypted_conversation_is_wrong_mode(
    sqlite_node: ServerProcess,
) -> None:
    """Text sent to an encrypted direct chat (socket or HTTP) is refused wrong_mode, unstored."""
    async with signed_in(sqlite_node, "alice", "bob") as (alice, bob):
        direct = await alice.open_direct(uid(bob))
        socket_error = await refused(alice.send_text(direct["id"], "in the clear"))
        assert socket_error.code == "wrong_mode"
        http_error = await refused(
            alice.request(
                "POST",
                f"/v1/conversations/{direct['id']}/messages",
                json={"client_msg_id": "c1", "kind": "text", "body": {"text": "in the clear"}},
            )
        )
        assert (http_error.status, http_error.code) == (422, "wrong_mode")
        assert (await conversation(bob, direct["id"]))["last_seq"] == 0
        await assert_quiet(alice, bob)


# -- edits and deletes ---------------------------------------------------------------


async def test_sender_edit_reaches_everyone_and_updates_history(
    sqlite_node: ServerProcess,
) -> None:
    """An edit is a message:new of kind "edit" with the next seq; history shows the new body."""
    async with signed_in(sqlite_node, "owner", "ann", "ben") as clients:
        owner, ann, ben = clients
        gid = (await new_group(owner, [ann, ben]))["id"]
        original = await ann.send_text(gid, "helo")
        await expect_message(clients, original)

        edit = await ann.edit_text(gid, original["id"], "hello")
        assert edit["kind"] == "edit" and edit["seq"] == original["seq"] + 1
        assert edit["sender_id"] == uid(ann)
        assert edit["body"] == {
            "target": original["id"],
            "kind": "text",
            "body": {"text": "hello"},
        }
        await expect_message(clients, edit)

        messages = await history_by_id(ben, gid)
        target = messages[original["id"]]
        assert target["body"] == {"text": "hello"}
        assert target["edited_at"] is not None and target["deleted_at"] is None
        assert target["seq"] == original["seq"], "the target keeps its place"
        assert messages[edit["id"]]["kind"] == "edit"
        await assert_quiet(*clients)


async def test_only_the_sender_can_edit(sqlite_node: ServerProcess) -> None:
    """Another member, even the owner, editing a message is refused not_allowed."""
    async with signed_in(sqlite_node, "owner", "ann", "ben") as clients:
        owner, ann, ben = clients
        gid = (await new_group(owner, [ann, ben]))["id"]
        original = await ann.send_text(gid, "mine")
        await expect_message(clients, original)
        for editor in (owner, ben):
            error = await refused(editor.edit_text(gid, original["id"], "yours"))
            assert error.code == "not_allowed"
        target = (await history_by_id(owner, gid))[original["id"]]
        assert target["body"] == {"text": "mine"} and target["edited_at"] is None
        assert (await conversation(owner, gid))["last_seq"] == original["seq"]
        await assert_quiet(*clients)


async def test_a_client_msg_id_names_one_action(sqlite_node: ServerProcess) -> None:
    """Resending an edit is idempotent; reusing a send's client_msg_id for an edit is a 409."""
    async with signed_in(sqlite_node, "ann", "ben") as clients:
        ann, ben = clients
        gid = (await new_group(ann, [ben]))["id"]
        original = await ann.send_text(gid, "first")
        other = await ann.send_text(gid, "second")

        def edit(client_msg_id: str, target: str, text: str) -> dict[str, Any]:
            return {
                "conversation_id": gid,
                "message_id": target,
                "client_msg_id": client_msg_id,
                "body": {"text": text},
            }

        send_id = original["client_msg_id"]
        reused = await refused(ann.emit("message:edit", edit(send_id, original["id"], "x")))
        assert reused.code == "client_msg_id_reused", reused
        done = await ann.emit("message:edit", edit("e1", original["id"], "first, edited"))
        again = await ann.emit("message:edit", edit("e1", original["id"], "first, edited"))
        assert again["id"] == done["id"] and done["kind"] == "edit"
        elsewhere = await refused(ann.emit("message:edit", edit("e1", other["id"], "again")))
        assert elsewhere.code == "client_msg_id_reused"
        history = await history_by_id(ann, gid)
        assert history[original["id"]]["body"] == {"text": "first, edited"}
        assert history[other["id"]]["body"] == {"text": "second"}


async def test_outsiders_cannot_tell_a_message_exists(sqlite_node: ServerProcess) -> None:
    """Editing in a conversation you are not in: conversation_not_found, real message id or not."""
    async with signed_in(sqlite_node, "owner", "ann", "eve") as clients:
        owner, ann, eve = clients
        gid = (await new_group(owner, [ann]))["id"]
        original = await ann.send_text(gid, "ours")
        for message_id in (original["id"], str(uuid.uuid4())):
            edit = await refused(eve.edit_text(gid, message_id, "mine now"))
            delete = await refused(eve.delete_message(gid, message_id))
            assert edit.code == delete.code == "conversation_not_found", message_id


async def test_sender_delete_tombstones_the_message(sqlite_node: ServerProcess) -> None:
    """A delete is a message:new of kind "delete"; the target's body is {} with deleted_at set."""
    async with signed_in(sqlite_node, "owner", "ann", "ben") as clients:
        owner, ann, ben = clients
        gid = (await new_group(owner, [ann, ben]))["id"]
        original = await ann.send_text(gid, "oops")
        await expect_message(clients, original)

        deletion = await ann.delete_message(gid, original["id"])
        assert deletion["kind"] == "delete" and deletion["seq"] == original["seq"] + 1
        assert deletion["body"] == {"target": original["id"]}
        await expect_message(clients, deletion)

        target = (await history_by_id(ben, gid))[original["id"]]
        assert target["body"] == {} and target["deleted_at"] is not None
        await assert_quiet(*clients)


async def test_admin_deletes_others_messages_a_plain_member_cannot(
    sqlite_node: ServerProcess,
) -> None:
    """In a group an admin may delete someone else's message; a plain member is not_allowed."""
    async with signed_in(sqlite_node, "owner", "adam", "ben", "cat") as clients:
        owner, adam, ben, cat = clients
        gid = (await new_group(owner, [adam, ben, cat]))["id"]
        await owner.set_role(gid, uid(adam), "admin")
        await expect_system(clients, "role_changed", role="admin")
        message = await ben.send_text(gid, "spam")
        await expect_message(clients, message)

        error = await refused(cat.delete_message(gid, message["id"]))
        assert error.code == "not_allowed"
        assert (await history_by_id(cat, gid))[message["id"]]["deleted_at"] is None

        deletion = await adam.delete_message(gid, message["id"])
        assert deletion["sender_id"] == uid(adam)
        await expect_message(clients, deletion)
        target = (await history_by_id(ben, gid))[message["id"]]
        assert target["body"] == {} and target["deleted_at"] is not None
        await assert_quiet(*clients)


async def test_deleted_message_cannot_be_deleted_or_edited_again(
    sqlite_node: ServerProcess,
) -> None:
    """Deleting twice and editing a deleted message are refused message_deleted (409)."""
    async with signed_in(sqlite_node, "alice", "bob") as clients:
        alice, bob = clients
        gid = (await new_group(alice, [bob]))["id"]
        message = await alice.send_text(gid, "gone soon")
        await expect_message(clients, message)
        deletion = await alice.delete_message(gid, message["id"])
        await expect_message(clients, deletion)

        # Socket acks carry the code only; message_deleted is the 409 ConflictError.
        again = await refused(alice.delete_message(gid, message["id"]))
        assert again.code == "message_deleted"
        edit = await refused(alice.edit_text(gid, message["id"], "back"))
        assert edit.code == "message_deleted"
        assert (await conversation(bob, gid))["last_seq"] == deletion["seq"]
        assert (await history_by_id(bob, gid))[message["id"]]["body"] == {}
        await assert_quiet(*clients)


async def test_edit_body_is_checked_like_a_sent_one(sqlite_node: ServerProcess) -> None:
    """An edit with an empty text, a non-string, an unknown field or NUL is invalid_request."""
    async with signed_in(sqlite_node, "alice", "bob") as clients:
        alice, bob = clients
        gid = (await new_group(alice, [bob]))["id"]
        message = await alice.send_text(gid, "fine")
        await expect_message(clients, message)
        bad_bodies: list[dict[str, Any]] = [
            {"text": ""},
            {"text": 5},
            {"text": "ok", "script": "<b>"},
            {"text": "a\x00b"},
            {},
        ]
        codes = []
        for body in bad_bodies:
            payload = {
                "conversation_id": gid,
                "message_id": message["id"],
                "client_msg_id": uuid.uuid4().hex,
                "body": body,
            }
            try:
                await alice.emit("message:edit", payload)
                codes.append("accepted")
            except ParleyApiError as exc:
                codes.append(exc.code)
        target = (await history_by_id(bob, gid))[message["id"]]
        assert codes == ["invalid_request"] * len(bad_bodies)
        assert target["body"] == {"text": "fine"} and target["edited_at"] is None


async def test_deleting_an_edited_message_leaves_none_of_its_text(
    sqlite_node: ServerProcess,
) -> None:
    """After a delete, neither the target nor its earlier edit records hold the text."""
    async with signed_in(sqlite_node, "alice", "bob", connect=False) as (alice, bob):
        gid = (await alice.create_group("g", [uid(bob)], mode="plaintext"))["id"]
        await alice.connect()
        message = await alice.send_text(gid, "my password is hunter2")
        edit = await alice.edit_text(gid, message["id"], "my password is hunter3")
        await alice.delete_message(gid, message["id"])
        messages = await history_by_id(bob, gid)
        assert messages[message["id"]]["body"] == {}
        assert "hunter" not in str(messages[edit["id"]]["body"])


# -- receipts --------------------------------------------------------------------------


async def test_read_receipt_reaches_the_other_members(sqlite_node: ServerProcess) -> None:
    """mark_read(seq) sends every other member receipt:updated with the reader's read_seq."""
    async with signed_in(sqlite_node, "owner", "ann", "ben") as clients:
        owner, ann, ben = clients
        gid = (await new_group(owner, [ann, ben]))["id"]
        ack = await owner.send_text(gid, "read me")
        await expect_message(clients, ack)

        receipt = await ann.mark_read(gid, ack["seq"])
        expected = {
            "conversation_id": gid,
            "user_id": uid(ann),
            "read_seq": ack["seq"],
            "delivered_seq": ack["seq"],
        }
        assert receipt == expected
        for other in (owner, ben):
            assert await expect_event(other, "receipt:updated") == expected
        await expect_event(ann, "receipt:updated")  # the reader's other devices learn too
        await assert_quiet(*clients)


async def test_read_mark_never_moves_backwards(sqlite_node: ServerProcess) -> None:
    """Marking an older seq read keeps the higher read mark, in the ack and the list."""
    async with signed_in(sqlite_node, "alice", "bob") as clients:
        alice, bob = clients
        gid = (await new_group(alice, [bob]))["id"]
        for text in ("one", "two", "three"):
            await expect_message(clients, await alice.send_text(gid, text))
        assert (await bob.mark_read(gid, 4))["read_seq"] == 4
        back = await bob.mark_read(gid, 2)
        assert (back["read_seq"], back["delivered_seq"]) == (4, 4)
        assert (await conversation(bob, gid))["read_seq"] == 4


async def test_read_beyond_last_seq_is_invalid(sqlite_node: ServerProcess) -> None:
    """A read mark past the conversation's last seq is invalid_request and tells nobody."""
    async with signed_in(sqlite_node, "alice", "bob") as clients:
        alice, bob = clients
        gid = (await new_group(alice, [bob]))["id"]
        error = await refused(bob.mark_read(gid, 2))
        assert error.code == "invalid_request"
        assert (await conversation(bob, gid))["read_seq"] == 0
        await assert_quiet(*clients)


async def test_unread_is_last_seq_minus_read_seq(sqlite_node: ServerProcess) -> None:
    """The conversation list's unread count is last_seq - read_seq, before and after reading."""
    async with signed_in(sqlite_node, "alice", "bob") as clients:
        alice, bob = clients
        gid = (await new_group(alice, [bob]))["id"]
        for i in range(4):
            await expect_message(clients, await alice.send_text(gid, f"m{i}"))

        async def listed() -> dict[str, Any]:
            return next(c for c in (await bob.conversations())["conversations"] if c["id"] == gid)

        before = await listed()
        assert (before["last_seq"], before["read_seq"], before["unread"]) == (5, 0, 5)
        await bob.mark_read(gid, 3)
        after = await listed()
        assert (after["last_seq"], after["read_seq"], after["unread"]) == (5, 3, 2)
        await bob.mark_read(gid, 5)
        assert (await listed())["unread"] == 0


# -- typing ------------------------------------------------------------------------------


async def test_typing_reaches_the_other_members_only(sqlite_node: ServerProcess) -> None:
    """typing start goes to every other member with expires_in, not to the typer."""
    async with signed_in(sqlite_node, "owner", "ann", "ben") as clients:
        owner, ann, ben = clients
        gid = (await new_group(owner, [ann, ben]))["id"]
        await ann.typing(gid, "start")
        for other in (owner, ben):
            event = await expect_event(other, "typing")
            assert event["conversation_id"] == gid and event["user_id"] == uid(ann)
            assert event["state"] == "start"
            assert isinstance(event["expires_in"], int) and event["expires_in"] > 0
        await assert_quiet(*clients)


async def test_non_member_typing_is_refused_and_unseen(sqlite_node: ServerProcess) -> None:
    """A non-member's typing is refused conversation_not_found and reaches nobody."""
    async with signed_in(sqlite_node, "owner", "ann", "eve") as clients:
        owner, ann, eve = clients
        gid = (await new_group(owner, [ann]))["id"]
        error = await refused(eve.typing(gid))
        assert error.code == "conversation_not_found"
        await assert_quiet(*clients)


# -- sync --------------------------------------------------------------------------------


async def test_sync_returns_exactly_the_missed_messages_paged(sqlite_node: ServerProcess) -> None:
    """30 messages in 2 conversations while offline: sync (limit 7) returns them all, in order."""
    async with (
        signed_in(sqlite_node, "alice", "carl") as (alice, carl),
        signed_in(sqlite_node, "bob", connect=False) as (bob,),
    ):
        one = (await alice.create_group("one", [uid(bob)], mode="plaintext"))["id"]
        two = (await alice.create_group("two", [uid(bob), uid(carl)], mode="plaintext"))["id"]
        idle = (await carl.open_direct(uid(bob), mode="plaintext"))["id"]
        positions = {one: 1, two: 1, idle: 0}
        acks: dict[str, list[dict[str, Any]]] = {one: [], two: []}
        for i in range(15):
            acks[one].append(await alice.send_text(one, f"one {i}"))
            acks[two].append(await carl.send_text(two, f"two {i}"))

        first = await http_sync(bob, {"positions": dict(positions), "limit": 7})
        pages = {c["conversation_id"]: c for c in first["conversations"]}
        assert set(pages) == {one, two}, "idle has nothing new"
        for cid in (one, two):
            assert [m["seq"] for m in pages[cid]["messages"]] == list(range(2, 9))
            assert pages[cid]["has_more"] and pages[cid]["last_seq"] == 16

        missed = await bob.sync(positions, limit=7)
        assert len(missed) == 30
        for cid in (one, two):
            got = [m for m in missed if m["conversation_id"] == cid]
            assert [m["id"] for m in got] == [a["id"] for a in acks[cid]]
            assert [m["seq"] for m in got] == list(range(2, 17))
        assert positions == {one: 16, two: 16, idle: 0}
        assert await bob.sync(positions, limit=7) == []


async def test_sync_includes_a_conversation_created_while_offline(
    sqlite_node: ServerProcess,
) -> None:
    """A group created while the client was offline comes back in sync with all its messages."""
    async with (
        signed_in(sqlite_node, "alice") as (alice,),
        signed_in(sqlite_node, "bob", connect=False) as (bob,),
    ):
        known = (await alice.open_direct(uid(bob), mode="plaintext"))["id"]
        positions = {known: 0}
        fresh = (await alice.create_group("while away", [uid(bob)], mode="plaintext"))["id"]
        acks = [await alice.send_text(fresh, t) for t in ("hi", "are you there")]

        missed = await bob.sync(positions, limit=7)
        assert [m["conversation_id"] for m in missed] == [fresh] * 3
        assert missed[0]["kind"] == "system" and missed[0]["body"]["event"] == "created"
        assert [m["id"] for m in missed[1:]] == [a["id"] for a in acks]
        assert positions == {known: 0, fresh: 3}


async def test_socket_sync_matches_http_sync(sqlite_node: ServerProcess) -> None:
    """The `sync` socket event answers exactly what POST /v1/sync answers."""
    async with signed_in(sqlite_node, "alice", "bob") as clients:
        alice, bob = clients
        gid = (await new_group(alice, [bob]))["id"]
        direct = (await alice.open_direct(uid(bob), mode="plaintext"))["id"]
        for i in range(5):
            await expect_message(clients, await alice.send_text(gid, f"g{i}"))
            await expect_message(clients, await bob.send_text(direct, f"d{i}"))
        gone = str(uuid.uuid4())
        for body in (
            {},
            {"positions": {gid: 2, direct: 0, gone: 3}, "limit": 3},
            {"positions": {gid: 6, direct: 5}},
        ):
            over_socket = await bob.emit("sync", body)
            assert over_socket == await http_sync(bob, body), body
        paged = await bob.emit("sync", {"positions": {gid: 2}, "limit": 3})
        assert [c["conversation_id"] for c in paged["conversations"]] == sorted([gid, direct])


async def test_sync_over_more_than_one_page_of_conversations_misses_nothing(
    sqlite_node: ServerProcess,
) -> None:
    """With 51 conversations (a server page holds 50) and limit 1, the SDK's sync gets all."""
    async with signed_in(sqlite_node, "alice", "bob", connect=False) as (alice, bob):
        gids = sorted(
            [
                (await alice.create_group(f"g{i}", [uid(bob)], mode="plaintext"))["id"]
                for i in range(51)
            ]
        )
        # The first page's 50 conversations get a second message; the 51st has one only.
        for gid in gids[:50]:
            await alice.request(
                "POST",
                f"/v1/conversations/{gid}/messages",
                json={"client_msg_id": "second", "body": {"text": "second"}},
            )
        positions = dict.fromkeys(gids, 0)
        missed = await bob.sync(positions, limit=1)
        assert len(missed) == 101
        assert positions == {gid: 1 if gid == gids[50] else 2 for gid in gids}


# -- authorization ----------------------------------------------------------------------


async def test_non_member_gets_404_on_every_group_door(sqlite_node: ServerProcess) -> None:
    """Get, history, send, PATCH, members and role changes: 404 conversation_not_found."""
    async with signed_in(sqlite_node, "owner", "ann", "eve") as clients:
        owner, ann, eve = clients
        gid = (await new_group(owner, [ann]))["id"]
        attempts: list[Callable[[], Awaitable[Any]]] = [
            lambda: conversation(eve, gid),
            lambda: eve.history(gid),
            lambda: eve.update_conversation(gid, title="mine"),
            lambda: eve.add_members(gid, [uid(eve)]),
            lambda: eve.remove_member(gid, uid(ann)),
            lambda: eve.remove_member(gid, uid(eve)),
            lambda: eve.set_role(gid, uid(eve), "owner"),
            lambda: eve.request(
                "POST",
                f"/v1/conversations/{gid}/messages",
                json={"client_msg_id": "x", "body": {"text": "hi"}},
            ),
        ]
        for attempt in attempts:
            error = await refused(attempt())
            assert (error.status, error.code) == (404, "conversation_not_found"), error
        after = await conversation(owner, gid)
        assert after["title"] == "crew" and after["last_seq"] == 1
        assert roles(after) == {uid(owner): "owner", uid(ann): "member"}
        await assert_quiet(*clients)


async def test_sync_and_list_never_include_foreign_conversations(
    sqlite_node: ServerProcess,
) -> None:
    """An outsider's sync and list hold no foreign conversation; naming one reveals nothing."""
    async with signed_in(sqlite_node, "owner", "ann", "eve", connect=False) as clients:
        owner, ann, eve = clients
        gid = (await owner.create_group("secret", [uid(ann)], mode="plaintext"))["id"]
        await owner.request(
            "POST",
            f"/v1/conversations/{gid}/messages",
            json={"client_msg_id": "s1", "body": {"text": "secret"}},
        )
        assert (await eve.conversations())["conversations"] == []
        assert (await http_sync(eve, {}))["conversations"] == []
        unknown = str(uuid.uuid4())
        for probe in (gid, unknown):
            page = await http_sync(eve, {"positions": {probe: 0}})
            assert page["conversations"] == [] and page["removed"] == [probe]
        assert await eve.sync({gid: 0}) == []


async def test_non_member_receipts_are_refused_and_unseen(sqlite_node: ServerProcess) -> None:
    """A non-member's read receipt is refused conversation_not_found and reaches nobody."""
    async with signed_in(sqlite_node, "owner", "ann", "eve") as clients:
        owner, ann, eve = clients
        gid = (await new_group(owner, [ann]))["id"]
        for kind in ("read", "delivered"):
            error = await refused(
                eve.emit("receipt", {"conversation_id": gid, "seq": 1, "kind": kind})
            )
            assert error.code == "conversation_not_found"
        await assert_quiet(*clients)


# -- bad input ---------------------------------------------------------------------------


async def test_bad_group_creation_is_422_and_creates_nothing(sqlite_node: ServerProcess) -> None:
    """Unknown fields, 1,001 members, bad UUIDs, long or NUL titles: 422, no conversation."""
    async with signed_in(sqlite_node, "alice", "bob", connect=False) as (alice, bob):
        good = {"title": "ok", "mode": "plaintext", "member_ids": [uid(bob)]}
        cases: dict[str, tuple[dict[str, Any], str]] = {
            "unknown field": ({**good, "owner_id": uid(bob)}, "invalid_request"),
            "1,001 member ids": (
                {**good, "member_ids": [str(uuid.uuid4()) for _ in range(1001)]},
                "invalid_request",
            ),
            "1,000 others + owner": (
                {**good, "member_ids": [str(uuid.uuid4()) for _ in range(1000)]},
                "too_many_members",
            ),
            "bad uuid": ({**good, "member_ids": [uid(bob), "not-a-uuid"]}, "invalid_request"),
            "129-char title": ({**good, "title": "x" * 129}, "invalid_request"),
            "NUL in title": ({**good, "title": "a\x00b"}, "invalid_request"),
            "newline in title": ({**good, "title": "a\nb"}, "invalid_request"),
            "unknown mode": ({**good, "mode": "secret"}, "invalid_request"),
            "no title": ({"member_ids": [uid(bob)]}, "invalid_request"),
        }
        for label, (body, code) in cases.items():
            response = await raw(alice, "POST", "/v1/conversations/groups", json=body)
            assert response.status_code == 422, (label, response.text)
            assert response.json()["error"]["code"] == code, (label, response.text)
        missing = await raw(
            alice,
            "POST",
            "/v1/conversations/groups",
            json={**good, "member_ids": [str(uuid.uuid4())]},
        )
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "user_not_found")
        for client in (alice, bob):
            assert (await client.conversations())["conversations"] == []
        ok = await raw(alice, "POST", "/v1/conversations/groups", json={**good, "title": "x" * 128})
        assert ok.status_code == 201, ok.text


async def test_bad_changes_to_a_group_are_422_and_change_nothing(
    sqlite_node: ServerProcess,
) -> None:
    """Bad PATCH, member, role and path input is 422; the group and its seq stay as they were."""
    async with signed_in(sqlite_node, "owner", "ann") as clients:
        owner, ann = clients
        gid = (await new_group(owner, [ann]))["id"]
        base = f"/v1/conversations/{gid}"
        cases: list[tuple[str, str, dict[str, Any] | None]] = [
            ("PATCH", base, {"title": "ok", "owner": uid(ann)}),
            ("PATCH", base, {"title": "x" * 129}),
            ("PATCH", base, {"title": "a\x00b"}),
            ("PATCH", base, {"topic": "t\x00"}),
            ("PATCH", base, {"avatar_media_id": "not-a-uuid"}),
            ("PATCH", "/v1/conversations/not-a-uuid", {"title": "ok"}),
            ("GET", "/v1/conversations/not-a-uuid", None),
            ("GET", "/v1/conversations/not-a-uuid/messages", None),
            ("POST", f"{base}/members", {"member_ids": ["not-a-uuid"]}),
            ("POST", f"{base}/members", {"member_ids": []}),
            ("POST", f"{base}/members", {"member_ids": [str(uuid.uuid4()) for _ in range(1001)]}),
            ("POST", f"{base}/members", {"member_ids": [uid(ann)], "role": "admin"}),
            ("DELETE", f"{base}/members/not-a-uuid", None),
            ("PUT", f"{base}/members/{uid(ann)}/role", {"role": "king"}),
            ("PUT", f"{base}/members/not-a-uuid/role", {"role": "admin"}),
        ]
        for method, path, body in cases:
            response = await raw(owner, method, path, json=body)
            assert response.status_code == 422, (method, path, body, response.text)
            assert response.json()["error"]["code"] == "invalid_request", response.text
        after = await conversation(ann, gid)
        assert (after["title"], after["topic"], after["last_seq"]) == ("crew", "", 1)
        assert roles(after) == {uid(owner): "owner", uid(ann): "member"}
        await assert_quiet(*clients)


async def test_bad_sync_input_is_422(sqlite_node: ServerProcess) -> None:
    """Sync with a negative seq, a limit out of range or an unknown field is 422."""
    async with signed_in(sqlite_node, "alice", "bob", connect=False) as (alice, bob):
        gid = (await alice.create_group("g", [uid(bob)], mode="plaintext"))["id"]
        for body in (
            {"positions": {gid: -1}},
            {"positions": {gid: 0}, "limit": 0},
            {"positions": {gid: 0}, "limit": 501},
            {"positions": {gid: 0}, "extra": True},
        ):
            response = await raw(bob, "POST", "/v1/sync", json=body)
            assert response.status_code == 422, (body, response.text)
            assert response.json()["error"]["code"] == "invalid_request", response.text


async def test_sync_with_a_non_uuid_id_is_422(sqlite_node: ServerProcess) -> None:
    """A position keyed by a non-UUID, or a non-UUID cursor, is 422 invalid_request."""
    async with signed_in(sqlite_node, "alice", "bob", connect=False) as (alice, bob):
        gid = (await alice.create_group("g", [uid(bob)], mode="plaintext"))["id"]
        answers = []
        for body in (
            {"positions": {"not-a-uuid": 0}},
            {"positions": {gid: 0}, "cursor": "not-a-uuid"},
        ):
            response = await raw(bob, "POST", "/v1/sync", json=body)
            answers.append((response.status_code, response.json().get("error", {}).get("code")))
        assert answers == [(422, "invalid_request")] * 2


# -- two nodes ---------------------------------------------------------------------------


async def test_group_spread_over_two_nodes_gets_every_message_and_receipt(
    cluster: tuple[ServerProcess, ServerProcess],
) -> None:
    """Members on node 1 and node 2 get every message, system message and receipt."""
    node1, node2 = cluster
    async with (
        signed_in(node1, "owner", "ann") as (owner, ann),
        signed_in(node2, "ben", "cat") as (ben, cat),
    ):
        everyone = [owner, ann, ben, cat]
        group = await ben.create_group("spread", [uid(owner), uid(ann), uid(cat)], mode="plaintext")
        gid = group["id"]
        await expect_system(everyone, "created", by=uid(ben))

        acks = []
        for sender in everyone:
            ack = await sender.send_text(gid, f"from {sender.device_name}")
            acks.append(ack)
            await expect_message(everyone, ack)
        assert [a["seq"] for a in acks] == [2, 3, 4, 5]

        for reader, seq in ((ann, 5), (cat, 4)):
            await reader.mark_read(gid, seq)
            for client in everyone:
                receipt = await expect_event(client, "receipt:updated")
                assert (receipt["user_id"], receipt["read_seq"]) == (uid(reader), seq)

        await ben.remove_member(gid, uid(ann))
        await expect_system(everyone, "member_removed", user_id=uid(ann))
        last = await cat.send_text(gid, "ann is gone")
        await expect_message([owner, ben, cat], last)
        await assert_quiet(*everyone)


async def test_get_sync_matches_post_sync(sqlite_node: ServerProcess) -> None:
    """GET /v1/sync with positions in the query answers like POST; bad positions are 422."""
    alice = await signed_in_client(sqlite_node, "alice", connect=False)
    bob = await signed_in_client(sqlite_node, "bob", connect=False)
    try:
        conversation = await alice.open_direct(bob.user_id or "", mode="plaintext")
        for i in range(3):
            await alice.request(
                "POST",
                f"/v1/conversations/{conversation['id']}/messages",
                json={"client_msg_id": f"g{i}", "body": {"text": f"m{i}"}},
            )
        by_get = await bob.request(
            "GET", "/v1/sync", params={"positions": f"{conversation['id']}:1", "limit": 10}
        )
        by_post = await bob.request(
            "POST", "/v1/sync", json={"positions": {conversation["id"]: 1}, "limit": 10}
        )
        assert by_get == by_post
        assert [m["seq"] for m in by_get["conversations"][0]["messages"]] == [2, 3]
        cid = conversation["id"]
        # Unicode digits pass str.isdigit() but not int() ("²") or mean nothing here ("٣").
        for bad in ("nope:1", f"{cid}:x", cid, f"{cid}:\u00b2", f"{cid}:\u0663", f"{cid}:-1"):
            error = await refused(bob.request("GET", "/v1/sync", params={"positions": bad}))
            assert error.status == 422, bad
    finally:
        await alice.close()
        await bob.close()
