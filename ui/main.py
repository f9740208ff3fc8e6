"""The appkit Streamlit app: ``appkit ui`` runs ``streamlit run`` on this file.

Pages live in ``ui/views``; what they share (profile, cached models, readiness) in :mod:`ui.runtime`.
"""

from __future__ import annotations

import streamlit as st

from ui.branding import ICON_SVG, LOGO_SVG

st.set_page_config(page_title="appkit", page_icon=":material/forum:", layout="wide",
                   menu_items={"About": "appkit: chat with your own documents, offline."})

PAGES = {
    "": [
        st.Page("views/chat.py", title="Chat", icon=":material/forum:", default=True),
        st.Page("views/documents.py", title="Documents", icon=":material/folder_open:",
                url_path="documents"),
        st.Page("views/tasks.py", title="Tasks", icon=":material/task_alt:", url_path="tasks"),
    ],
    "Improve": [
        st.Page("views/feedback.py", title="Feedback", icon=":material/thumbs_up_down:",
                url_path="feedback"),
        st.Page("views/quality.py", title="Quality", icon=":material/monitoring:",
                url_path="quality"),
        st.Page("views/settings.py", title="Settings", icon=":material/tune:",
                url_path="settings"),
    ],
    "Hidden": [
        st.Page("views/source.py", title="Source", icon=":material/article:", url_path="source",
                visibility="hidden"),
    ],
}

st.html("""<style>
  .block-container, [data-testid="stMainBlockContainer"] {padding-top: 2.5rem; max-width: 1100px;}
  [data-testid="stChatMessage"] {padding: 0.6rem 0.9rem;}
  [data-testid="stSidebarUserContent"] {padding-top: 0.5rem;}
  [data-testid="stStatusWidget"] {display: none;}
</style>""")
st.logo(LOGO_SVG, size="large", icon_image=ICON_SVG)

page = st.navigation(PAGES, expanded=True)

from ui.components import sidebar_footer  # noqa: E402 - after set_page_config and navigation

sidebar_footer()
try:
    page.run()
finally:
    from ui.runtime import warm_up

    warm_up()
