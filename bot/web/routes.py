"""Every route of the web page (the app composes them with the API's: bot/processes/app.py)."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bot.web import github_login
from bot.web.activity_page import activity_events, activity_page
from bot.web.auth import login, login_form, logout
from bot.web.board import tickets_board
from bot.web.dashboard_page import chart_image, dashboard_page
from bot.web.harness_impact import impact_page
from bot.web.harness_pages import harness_routes
from bot.web.home_page import home
from bot.web.live_events import run_events, ticket_events, tickets_events
from bot.web.machine_pages import control_machine, machine_page, machines_page
from bot.web.run_pages import run_page
from bot.web.schedule_pages import control_schedule, schedules_page
from bot.web.setup_page import CALLBACK_PATH, callback, register, setup
from bot.web.ticket_actions import act_on_ticket
from bot.web.ticket_list import ticket_list
from bot.web.ticket_pages import ticket_by_github_key, ticket_by_tracker_key, ticket_page


def web_routes() -> list[BaseRoute]:
    return [
        Route("/", home, methods=["GET"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/login/github", github_login.start, methods=["GET"]),
        Route("/login/github/callback", github_login.callback, methods=["GET"]),
        Route("/setup", setup, methods=["GET"]),
        Route("/setup", register, methods=["POST"]),
        Route(CALLBACK_PATH, callback, methods=["GET"]),
        Route("/harnesses/{name}/impact", impact_page, methods=["GET"]),
        *harness_routes(),
        Route("/metrics/dashboard", dashboard_page, methods=["GET"]),
        Route("/metrics/dashboard/charts/{name}.svg", chart_image, methods=["GET"]),
        Route("/tickets", tickets_board, methods=["GET"]),
        Route("/tickets/events", tickets_events, methods=["GET"]),
        Route("/tickets/list", ticket_list, methods=["GET"]),
        Route("/tickets/{id}", ticket_page, methods=["GET"]),
        Route("/tickets/{id}/actions", act_on_ticket, methods=["POST"]),
        Route("/tickets/{id}/events", ticket_events, methods=["GET"]),
        Route("/tickets/{source}/{key}", ticket_by_tracker_key, methods=["GET"]),
        Route("/tickets/{owner}/{name}/{number}", ticket_by_github_key, methods=["GET"]),
        Route("/activity", activity_page, methods=["GET"]),
        Route("/activity/events", activity_events, methods=["GET"]),
        Route("/runs/{id}", run_page, methods=["GET"]),
        Route("/machines", machines_page, methods=["GET"]),
        Route("/machines/{name}", machine_page, methods=["GET"]),
        Route("/machines/{name}", control_machine, methods=["POST"]),
        Route("/runs/{id}/events", run_events, methods=["GET"]),
        Route("/schedules", schedules_page, methods=["GET"]),
        Route("/schedules/{owner}/{repo}/{name}", control_schedule, methods=["POST"]),
        Route("/schedules/{scope}/{name}", control_schedule, methods=["POST"]),
        Mount(
            "/static", app=StaticFiles(directory=Path(__file__).parent / "static"), name="static"
        ),
    ]
