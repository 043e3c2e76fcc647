"""Prometheus metrics (served at /metrics)."""

from prometheus_client import Counter, Gauge, Histogram

CALLS = Counter("centralino_calls_total", "Calls ended, by line and outcome", ["line", "outcome"])
ACTIVE_CALLS = Gauge("centralino_active_calls", "Calls in progress")
WAITING = Gauge("centralino_queue_waiting", "Callers waiting, by topic", ["topic"])
ARI_REACTION = Histogram(
    "centralino_ari_reaction_seconds",
    "From an ARI event read off the socket to the command it caused being sent",
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)
CONFIG_RELOADS = Counter("centralino_config_reloads_total", "Reload attempts", ["result"])
DATABASE_UP = Gauge("centralino_database_up",
                    "0 while the database cannot be reached or refuses writes")
RECORDS_WAITING = Gauge("centralino_records_waiting",
                        "Call records, queue_log lines and events not yet written")

# Figures (centralino.figures.compute), refreshed when /metrics is scraped
# (centralino.figures.http).
LONGEST_WAIT = Gauge("centralino_queue_longest_wait_seconds",
                     "How long the longest-waiting caller of the topic has waited", ["topic"])
AGENTS = Gauge("centralino_agents", "Agents by state", ["state"])
QUEUE_AGENTS = Gauge("centralino_queue_agents", "Agents serving the topic, by state",
                     ["topic", "state"])
# Since local midnight, per topic (gauges: they start again from 0 every day).
TODAY_OFFERED = Gauge("centralino_today_offered", "Callers who entered the topic's queue today",
                      ["topic"])
TODAY_ANSWERED = Gauge("centralino_today_answered", "Of those, answered by an agent", ["topic"])
TODAY_ABANDONED = Gauge("centralino_today_abandoned",
                        "Of those, hung up after waiting at least short_abandon", ["topic"])
TODAY_SHORT_ABANDONED = Gauge("centralino_today_short_abandoned",
                              "Of those, hung up before short_abandon", ["topic"])
TODAY_SERVICE_LEVEL = Gauge(
    "centralino_today_service_level_ratio",
    "Answered within service_level / (offered - short abandoned); absent when undefined",
    ["topic"])
TODAY_ASA = Gauge("centralino_today_asa_seconds", "Average wait of answered callers",
                  ["topic"])
TODAY_AHT = Gauge("centralino_today_aht_seconds", "Average talk time of completed calls",
                  ["topic"])
# Recall requests created since local midnight, per topic
# (centralino.figures.compute.recall_report).
TODAY_RECALLS = Gauge("centralino_today_recall_requests",
                      "Recall requests made today, by where they stand now", ["topic", "status"])
TODAY_RECALL_ATTEMPTS = Gauge("centralino_today_recall_attempts",
                              "Calls placed for today's recall requests, by outcome",
                              ["topic", "outcome"])
TODAY_RECALL_FIRST_ATTEMPT = Gauge(
    "centralino_today_recall_first_attempt_seconds",
    "Average time from a recall request (its slot, for call-me-back) to the first call to the "
    "citizen; absent when undefined", ["topic"])
TODAY_RECALL_ATTEMPTS_PER_SUCCESS = Gauge(
    "centralino_today_recall_attempts_per_success",
    "Calls to the citizen per recall request done; absent when undefined", ["topic"])

# Written requests (tickets.figures): the backlog now, and those opened since local midnight.
TICKETS_OPEN = Gauge("centralino_tickets_open", "Open tickets now, per topic and level",
                     ["topic", "level"])
TICKETS_PAST_DEADLINE = Gauge("centralino_tickets_past_deadline",
                              "Open tickets past their resolution deadline")
TICKETS_OLDEST = Gauge("centralino_tickets_oldest_open_seconds",
                       "Age of the oldest open ticket; absent when none is open")
TODAY_TICKETS = Gauge("centralino_today_tickets", "Tickets opened today, by where they stand",
                      ["state"])
TODAY_TICKETS_CHANNEL = Gauge("centralino_today_tickets_by_channel",
                              "Tickets opened today, by channel", ["channel"])
TODAY_TICKET_SLA = Gauge(
    "centralino_today_ticket_sla_met_ratio",
    "Of today's tickets answered (resolved), those within their deadline; absent when none",
    ["target"])

# The HTTP side's caps (centralino.web.site).
HTTP_CONNECTIONS = Gauge("centralino_http_connections", "HTTP connections open")
HTTP_REFUSED = Counter("centralino_http_connections_refused_total",
                       "HTTP connections closed at once: per_address or total cap reached",
                       ["reason"])

# The desk's mailboxes (centralino.mail.http.refresh, when /metrics is scraped).
MAILBOX_UP = Gauge("centralino_mailbox_up", "1 while the mailbox's IMAP server is connected",
                   ["mailbox"])
MAIL_STORED = Counter("centralino_mail_stored", "Messages fetched and stored, per mailbox",
                      ["mailbox"])
MAIL_QUARANTINED = Gauge("centralino_mail_quarantined",
                         "Unreadable messages no supervisor has looked at yet", ["mailbox"])
MAIL_OLDEST_STORED = Gauge(
    "centralino_mail_oldest_stored_seconds",
    "Age of the oldest message stored but not yet taken in; absent when none waits",
    ["mailbox"])
MAIL_OUTBOX = Gauge("centralino_mail_outbox",
                    "Messages to send not sent (yet): pending, sending, failed, uncertain",
                    ["mailbox", "status"])
