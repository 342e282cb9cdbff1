"""The services of one Parley process, built from settings and wired explicitly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

from config.errors import UnavailableError
from config.keys import ServerKeys, load_server_keys
from config.settings import Settings
from crypto.passwords import PasswordHasher
from crypto.tokens import AccessTokenIssuer, AccessTokenVerifier, InvalidTokenError
from media.blobs import BlobStore, build_blob_store
from media.pool import MediaPool
from realtime.control import CONTROL_LOST, CONTROL_RESUMED, build_control_bus
from realtime.hub import Principal, SocketHub
from realtime.metrics import RealtimeMetrics
from realtime.presence import build_presence_store
from server.auth.email import EmailSender, build_email_sender
from server.auth.email_password import EmailPasswordService, PasswordPool
from server.auth.identities import IdentityService
from server.auth.keyring import KeyRing
from server.auth.oidc import OidcService
from server.auth.phone import PhoneAuthService
from server.auth.sessions import SessionService
from server.auth.sms import SmsSender, build_sms_sender
from server.auth.wallets import WalletProofService
from server.chats.access import ROSTER_CHANGED, RosterCache, Rosters
from server.chats.conversations import ConversationService
from server.chats.envelopes import DEVICES_CHANGED, EnvelopeChecker, MemberDevices
from server.chats.messages import MessageService
from server.chats.requests import ChatRequestService
from server.contacts.service import ContactService
from server.devices.service import DeviceService
from server.media.service import MediaService
from server.metrics import HttpMetrics, MediaMetrics, TipMetrics
from server.search.indexer import Indexer
from server.search.service import SearchService
from server.tips.rpc import EthRpc
from server.tips.service import TipService
from server.tips.tracker import TipTracker
from server.users.blocks import BlockService
from server.users.profiles import ProfileService
from server.users.service import UserService
from storage.kv import KeyValueStore, MemoryKeyValueStore, RedisKeyValueStore
from storage.search import SearchIndex, build_search_index


@dataclass
class Services:
    settings: Settings
    registry: CollectorRegistry
    http_metrics: HttpMetrics
    keys: ServerKeys
    kv: KeyValueStore
    sms: SmsSender
    mailer: EmailSender
    keyring: KeyRing
    hub: SocketHub
    users: UserService
    sessions: SessionService
    phone_auth: PhoneAuthService
    email_auth: EmailPasswordService
    oidc: OidcService
    wallets: WalletProofService
    identities: IdentityService
    messages: MessageService
    conversations: ConversationService
    devices: DeviceService
    blobs: BlobStore
    media_pool: MediaPool
    media: MediaService
    contacts: ContactService
    profiles: ProfileService
    blocks: BlockService
    chat_requests: ChatRequestService
    search_index: SearchIndex
    indexer: Indexer
    search: SearchService
    tips: TipService
    tip_tracker: TipTracker
    draining: bool = False


def build_services(settings: Settings) -> Services:
    """Construct everything; nothing connects until the lifespan opens it."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)  # CPU seconds, resident memory, open files
    PlatformCollector(registry=registry)  # the Python build
    keys = load_server_keys(settings.auth)
    auth = settings.auth
    issuer = AccessTokenIssuer(
        keys.jwt_private_key, issuer=auth.issuer, audience=auth.audience, ttl=auth.access_token_ttl
    )
    verifier = AccessTokenVerifier(
        [keys.jwt_private_key.public_key()], issuer=auth.issuer, audience=auth.audience
    )
    keyring = KeyRing(auth, keys.jwt_private_key, issuer, verifier)
    kv: KeyValueStore
    if settings.redis.url:
        kv = RedisKeyValueStore.from_url(settings.redis.url, prefix=settings.redis.key_prefix)
    else:
        kv = MemoryKeyValueStore()

    users = UserService()

    async def on_session_revoked(user_id: str, session_id: str) -> None:
        await hub.revoke_session(user_id, session_id)

    sessions = SessionService(auth, issuer, kv, on_revoked=on_session_revoked)

    async def verify_socket_token(token: str) -> Principal:
        claims = keyring.verify(token)
        if not await sessions.is_active(claims.session_id):
            raise InvalidTokenError(
                "session has been revoked; sign in again", code="session_revoked"
            )
        return Principal(user_id=claims.user_id, session_id=claims.session_id)

    realtime = settings.realtime

    async def limit_events(user_id: str) -> float:
        try:
            return await kv.take(
                f"rl:events:{user_id}", rate=realtime.events_per_second, burst=realtime.events_burst
            )
        except UnavailableError:
            # Without Redis, chat goes on unthrottled rather than stopping:
            # messages are durable in the database either way.
            return 0.0

    hub = SocketHub(
        realtime,
        settings.redis,
        verify_socket_token,
        RealtimeMetrics(registry),
        build_control_bus(settings.redis.url, settings.redis.channel),
        session_checker=sessions.inactive_among,
        presence=build_presence_store(settings.redis.url, settings.redis.key_prefix),
        peers=users.peers,
        limiter=limit_events,
    )
    sms = build_sms_sender(settings.sms)
    mailer = build_email_sender(settings.email)
    public_url = settings.server.public_url
    passwords = PasswordPool(
        PasswordHasher(
            keys.password_pepper,
            time_cost=auth.password_time_cost,
            memory_cost=auth.password_memory_kib,
            parallelism=auth.password_parallelism,
        ),
        auth.password_hash_concurrency,
    )
    phone_auth = PhoneAuthService(auth, kv, sms, keys.server_secret, users, sessions)
    wallets = WalletProofService(auth, public_url, settings.eth.chain_id)
    rosters = Rosters(RosterCache(), hub.publish_control)
    hub.on_control(ROSTER_CHANGED, rosters.on_notice)
    member_devices = MemberDevices(publish=hub.publish_control)
    hub.on_control(DEVICES_CHANGED, member_devices.on_notice)

    kept_by_notices = (rosters.cache, member_devices)

    async def distrust_what_notices_keep(_: dict[str, Any]) -> None:
        for cache in kept_by_notices:
            cache.distrust()

    async def forget_what_notices_keep(_: dict[str, Any]) -> None:
        for cache in kept_by_notices:
            cache.clear()

    hub.on_control(CONTROL_LOST, distrust_what_notices_keep)
    hub.on_control(CONTROL_RESUMED, forget_what_notices_keep)
    messages = MessageService(settings.chat, hub, EnvelopeChecker(member_devices), rosters)
    conversations = ConversationService(settings.chat, users, messages, rosters)
    contacts = ContactService(keys.server_secret, hub)
    search_index = build_search_index(settings.database.is_sqlite, settings.opensearch.url)
    indexer = Indexer(search_index, contacts, kv)
    blobs = build_blob_store(settings.media)
    media_pool = MediaPool(settings.media.workers, settings.media.queue)
    eth = settings.eth
    tip_metrics = TipMetrics(registry)
    rpc = (
        EthRpc(
            eth.rpc_url,
            timeout=eth.rpc_timeout,
            retries=eth.rpc_retries,
            observe=tip_metrics.observe_rpc,
        )
        if eth.rpc_url
        else None
    )
    tips = TipService(eth, rpc, users, kv, hub, messages, tip_metrics)
    tip_tracker = TipTracker(eth, tips, kv)
    tips.on_submitted = tip_tracker.wake
    identities = IdentityService(users, sessions, wallets, phone_auth)
    return Services(
        settings=settings,
        registry=registry,
        http_metrics=HttpMetrics(registry),
        keys=keys,
        kv=kv,
        sms=sms,
        mailer=mailer,
        keyring=keyring,
        hub=hub,
        users=users,
        sessions=sessions,
        phone_auth=phone_auth,
        email_auth=EmailPasswordService(auth, public_url, kv, mailer, passwords, sessions),
        oidc=OidcService(auth, public_url, kv, keys.server_secret, users, sessions, identities),
        wallets=wallets,
        identities=identities,
        messages=messages,
        conversations=conversations,
        devices=DeviceService(keys.ca_private_key, hub, member_devices),
        blobs=blobs,
        media_pool=media_pool,
        media=MediaService(
            settings.media, blobs, media_pool, kv, rosters.cache, MediaMetrics(registry)
        ),
        contacts=contacts,
        profiles=ProfileService(hub, contacts.mutual),
        blocks=BlockService(users, rosters),
        chat_requests=ChatRequestService(users, conversations, hub),
        search_index=search_index,
        indexer=indexer,
        search=SearchService(search_index, indexer, contacts),
        tips=tips,
        tip_tracker=tip_tracker,
    )
