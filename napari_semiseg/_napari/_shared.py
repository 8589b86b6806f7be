"""One ``ProjectSession`` per viewer, shared by its panels (Project, Predict, Fine-tune).

napari builds each dock widget on its own, handing it only the viewer; the panels meet here.
The registry holds viewers weakly, so a closed viewer takes its session with it.
"""

from __future__ import annotations

import weakref

from ._session import ProjectSession

_SESSIONS: "weakref.WeakKeyDictionary[object, ProjectSession]" = weakref.WeakKeyDictionary()


def session_for(viewer) -> ProjectSession:
    """The session of ``viewer``'s panels, created on first use."""
    session = _SESSIONS.get(viewer)
    if session is None:
        session = _SESSIONS[viewer] = ProjectSession()
    return session


def share_session(viewer, session: ProjectSession) -> ProjectSession:
    """Make ``session`` the one ``viewer``'s panels use (a panel built with its own session)."""
    _SESSIONS[viewer] = session
    return session
