"""End to end: ``lifeguard run`` opens and resolves an incident, and Telegram and e-mail both get it."""

from __future__ import annotations

import json
import signal

from tests.channel_servers import BOT_TOKEN, CHAT_ID, SmtpServer, TelegramServer
from tests.fixtures_agent import agent_config, wait_until

PASSWORD = "smtp-pa55word-never-logged"


async def test_an_incident_reaches_telegram_and_email_opened_then_resolved(target, spawn_agent) -> None:
    telegram = TelegramServer()
    await telegram.start()
    smtp = SmtpServer("none", logins={"lifeguard": PASSWORD}).start()
    try:
        cfg = agent_config(
            [{"name": "api", "type": "http", "url": target.url, "severity": "SEV-1"}],
            [
                {"name": "tg", "type": "telegram", "bot_token": "${TG_TOKEN}", "chat_id": "${TG_CHAT}",
                 "api_url": telegram.api_url, "timeout": "2s"},
                {"name": "mail", "type": "email", "host": "127.0.0.1", "port": smtp.port, "security": "none",
                 "username": "lifeguard", "password": "${SMTP_PASSWORD}", "from": "Lifeguard <lg@example.com>",
                 "to": ["ops@example.com"], "timeout": "2s"},
            ],
        )
        env = {"TG_TOKEN": BOT_TOKEN, "TG_CHAT": str(CHAT_ID), "SMTP_PASSWORD": PASSWORD}
        agent = spawn_agent(cfg, env)
        await agent.ready()
        await wait_until(lambda: target.hits >= 2, 10, "the target to be checked")
        # Telegram's first answer echoes the request URL (with the token) in an error: retried, masked.
        telegram.script.append((502, f"bad gateway for {telegram.api_url}/bot{BOT_TOKEN}/sendMessage"))
        target.status, target.body = 500, "database is down <b>"
        await wait_until(lambda: telegram.sent and smtp.mails, 15, "the opened incident on both channels")

        target.status, target.body = 200, "ok"
        await wait_until(lambda: len(telegram.sent) >= 2 and len(smtp.mails) >= 2, 15, "the resolved incident on both")

        opened, resolved = telegram.sent
        assert opened.body["chat_id"] == CHAT_ID and opened.body["parse_mode"] == "HTML"
        assert opened.plain.startswith("[SEV-1][OPENED] api failing: HTTP 500\n")
        assert ("b", "[SEV-1][OPENED] api failing: HTTP 500") in opened.entities
        assert resolved.plain.startswith("[SEV-1][RESOLVED] api recovered after ")
        assert all(path == f"/bot{BOT_TOKEN}/sendMessage" for path, _, _ in telegram.requests)

        first, second = (mail.message for mail in smtp.mails)
        assert first["Subject"] == "[SEV-1][OPENED] api failing: HTTP 500"
        assert second["Subject"].startswith("[SEV-1][RESOLVED] api recovered after ")
        assert first["References"] == second["References"]  # one thread per incident
        attachments = [list(m.iter_attachments()) for m in (first, second)]
        evidence = [json.loads(a[0].get_content()) for a in attachments]
        assert [e["phase"] for e in evidence] == ["opened", "resolved"]
        assert "database is down <b>" in evidence[0]["response"]["body"]
        incident_id = first["X-Lifeguard-Incident"]
        assert attachments[0][0].get_filename() == f"evidence-{incident_id}.json"

        agent.signal(signal.SIGTERM)
        assert await agent.wait() == 0
        logs = agent.log_text()
        delivered = [e for e in agent.log_events() if e.get("event") == "delivery.delivered"]
        assert {e.get("notifier") for e in delivered} >= {"tg", "mail"}
        secret_half = BOT_TOKEN.partition(":")[2]
        assert secret_half not in logs and PASSWORD not in logs
        stored = [f for f in agent.workdir.rglob("*") if f.is_file() and ".db" in f.name]
        assert stored
        for file in stored:  # the store holds each attempt's error: the echoed token is masked there
            assert secret_half.encode() not in file.read_bytes()
        assert "[redacted]" in logs  # the echo was seen, masked
    finally:
        smtp.stop()
        await telegram.stop()
