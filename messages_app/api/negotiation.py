from rest_framework.negotiation import DefaultContentNegotiation


class AlwaysJSON(DefaultContentNegotiation):
    """Answer JSON whatever the Accept header says: the API has one format, and a
    client sending ``Accept: text/plain`` should get it, not a 406."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type
