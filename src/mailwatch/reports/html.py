def render_html(report, tz):
    raise NotImplementedError
