"""The web page templates: packaged, sandboxed, autoescaped; the stylesheet rides in a hashed <style>."""

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from mailwatch.resources import packaged_dir


class Pages:
    """Renders `templates/web/*.html.j2`; `css` is the stylesheet the Content-Security-Policy allows."""

    def __init__(self) -> None:
        folder = packaged_dir("templates") / "web"
        self.css = (folder / "page.css").read_text(encoding="utf-8")
        # Sandboxed and escaping everything: subjects, names and snippets are the customer's text.
        self.env = SandboxedEnvironment(loader=FileSystemLoader(folder), autoescape=True, undefined=StrictUndefined)

    def render(self, name: str, **context: object) -> str:
        return self.env.get_template(name).render(css=Markup(self.css), **context)

    def notice(self, heading: str, text: str, *, fresh_link: bool = False, back: str | None = None) -> str:
        return self.render("notice.html.j2", heading=heading, text=text, fresh_link=fresh_link, back=back)
