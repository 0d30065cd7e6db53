from fastapi import Request

from server.services import Services


def services(request: Request) -> Services:
    return request.app.state.services
