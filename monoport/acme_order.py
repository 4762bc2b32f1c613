"""The ACME order flow: the account, one order, its challenges, the finalization; no scheduling here.

What :mod:`monoport.acme_client`'s Manager calls when a certificate is due;
kept apart so the talk with the CA reads in one place and the Manager reads
as the schedule it is (when, backoff, picking up what others stored).

The ``acme`` package (certbot's) speaks the protocol; it is synchronous
(requests) and so runs under gevent's monkey-patching. Its 5.x releases have
no TLS-ALPN-01 challenge class: :class:`TLSALPN01` registers one.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Final

import josepy as jose
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives.asymmetric import ec

from . import __version__
from .acme_challenge import key_pem
from .acme_store import Store

log = logging.getLogger("monoport")

#: How long one order may take, from new-order to the certificate.
ORDER_TIMEOUT: Final = 90.0
#: Seconds to wait for a network answer from the directory.
NETWORK_TIMEOUT: Final = 30


class TLSALPN01Response(challenges.KeyAuthorizationChallengeResponse):
    """The (empty-bodied) answer that tells the CA to validate a tls-alpn-01 challenge."""

    typ = "tls-alpn-01"


@challenges.Challenge.register
class TLSALPN01(challenges.KeyAuthorizationChallenge):
    """RFC 8737's challenge, which acme 5.x no longer ships."""

    response_cls = TLSALPN01Response
    typ = response_cls.typ

    def validation(self, account_key: jose.JWK, **kwargs: Any) -> str:
        return self.key_authorization(account_key)


@dataclass
class _Order:
    """The pieces of one order, kept so challenges are removed whatever happens."""

    placed: list[tuple[str | None, str | None]] = field(default_factory=list)


class OrderFlow:
    """Talks to one ACME directory for one process: its account, then one order at a time."""

    def __init__(self, config: Any, store: Store) -> None:
        self.config = config
        self.store = store
        self.challenges = store.challenges
        self.directory_url: str = config.acme_directory
        self._client: client.ClientV2 | None = None
        self._account_key: jose.JWKEC | None = None

    def reset(self) -> None:
        """After a failure: a fresh directory, nonce and account lookup on the next order."""
        self._client = None

    def _acme(self) -> client.ClientV2:
        """The client for the directory, with the account registered (or found again) on first use."""
        if self._client is not None:
            return self._client
        if self._account_key is None:
            self._account_key = jose.JWKEC(key=self.store.account_key())
        verify: Any = self.config.acme_ca_bundle or True
        net = client.ClientNetwork(self._account_key, alg=jose.ES256, verify_ssl=verify,
                                   user_agent=f"monoport/{__version__}", timeout=NETWORK_TIMEOUT)
        directory = client.ClientV2.get_directory(self.directory_url, net)
        acme = client.ClientV2(directory, net)
        state = self.store.load_state()
        account_url = state.get("accounts", {}).get(self.directory_url)
        if account_url:
            net.account = messages.RegistrationResource(uri=account_url, body=messages.Registration())
        else:
            contact = (f"mailto:{self.config.acme_email}",) if self.config.acme_email else ()
            registration = messages.NewRegistration(contact=contact, terms_of_service_agreed=True)
            try:
                regr = acme.new_account(registration)
            except errors.ConflictError as exc:  # the key is known already: use that account
                regr = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
                net.account = regr
            state.setdefault("accounts", {})[self.directory_url] = regr.uri
            self.store.save_state(state)
            log.info("acme: account %s registered with %s", regr.uri, self.directory_url)
        self._client = acme
        return acme

    def order(self, primary: str, names: tuple[str, ...]) -> None:
        """Order one certificate for ``names`` and store it under ``primary``.

        Raises:
            Exception: whatever the CA, the network or a challenge raised; the caller backs off.
        """
        acme = self._acme()
        key = ec.generate_private_key(ec.SECP256R1())
        private = key_pem(key)
        csr = crypto_util.make_csr(private, list(names))
        try:
            order = acme.new_order(csr)
        except messages.Error as exc:
            if exc.code == "accountDoesNotExist":  # the CA forgot us (a test CA restarted)
                self._forget_account()
            raise
        pending = _Order()
        try:
            for authz in order.authorizations:
                if authz.body.status == messages.STATUS_VALID:
                    continue
                self._answer(acme, authz, pending)
            deadline = dt.datetime.now() + dt.timedelta(seconds=ORDER_TIMEOUT)
            order = acme.poll_and_finalize(order, deadline)
        finally:
            for name, token in pending.placed:
                self.challenges.remove(name=name, token=token)
        self.store.save_cert(primary, names, self.directory_url, private,
                             order.fullchain_pem.encode())

    def _answer(self, acme: client.ClientV2, authz: messages.AuthorizationResource, pending: _Order) -> None:
        """Place the answer to one authorization's challenge, then tell the CA to check it."""
        name = authz.body.identifier.value
        by_type = {c.chall.typ: c for c in authz.body.challenges}
        challb = next((by_type[t] for t in self.config.acme_challenge if t in by_type), None)
        if challb is None:
            offered = ", ".join(by_type)
            wanted = ", ".join(self.config.acme_challenge)
            raise errors.Error(f"the CA offers no {wanted} challenge for {name} (offered: {offered})")
        response, validation = challb.response_and_validation(self._account_key)
        if isinstance(challb.chall, TLSALPN01):
            self.challenges.put_tls_alpn(name, validation)
            pending.placed.append((name, None))
        else:
            token = challb.chall.encode("token")
            self.challenges.put_http(token, validation)
            pending.placed.append((None, token))
        acme.answer_challenge(challb, response)

    def _forget_account(self) -> None:
        state = self.store.load_state()
        state.get("accounts", {}).pop(self.directory_url, None)
        self.store.save_state(state)


def describe(exc: BaseException) -> str:
    """One line for a failed attempt: the CA's problem document, or the exception."""
    if isinstance(exc, messages.Error):
        return f"{exc.typ or 'error'}: {exc.detail or exc.title or ''}".strip()
    if isinstance(exc, errors.ValidationError):  # say what the validator saw
        problems = [f"{authz.body.identifier.value}: {chall.error.typ}: {chall.error.detail}"
                    for authz in exc.failed_authzrs for chall in authz.body.challenges if chall.error]
        return "challenge rejected (" + "; ".join(problems or ["no detail"]) + ")"
    text = str(exc).splitlines()[0] if str(exc) else ""
    os_error = re.search(r"\[Errno \d+\] [^'\")]+", text)  # requests nests the socket error deep inside
    if os_error:
        text = os_error.group(0)
    return f"{type(exc).__name__}: {text}"[:300]
