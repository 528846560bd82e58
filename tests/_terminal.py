"""A terminal for the progress-bar tests: stderr that says it is a tty, and a tqdm that records
what it was asked to show instead of drawing it."""
import io
import sys


class FakeBar:
    made = []

    def __init__(self, **kwargs):
        self.kwargs, self.postfix, self.updates, self.closed = kwargs, [], [], False
        FakeBar.made.append(self)

    def set_postfix(self, **kwargs):
        self.postfix.append(kwargs)

    def update(self, n):
        self.updates.append(n)

    def close(self):
        self.closed = True


class Terminal(io.StringIO):
    def isatty(self):
        return True


def on_a_terminal(monkeypatch):
    """Call it in the test's body (pytest sets its own stderr between setup and the call);
    returns the list of bars that tqdm is then asked for."""
    import tqdm.auto

    FakeBar.made = []
    monkeypatch.setattr(tqdm.auto, "tqdm", FakeBar)
    monkeypatch.setattr(sys, "stderr", Terminal())
    return FakeBar.made
