"""The app's logo and icon as SVG text (Streamlit accepts SVG markup wherever it takes an image,
and Python source ships in every install, unlike loose asset files)."""

LOGO_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="168" height="40" viewBox="0 0 168 40">
  <rect x="2" y="4" width="32" height="32" rx="9" fill="#4f46e5"/>
  <path d="M10 14.5h16M10 20h16M10 25.5h10" stroke="#fff" stroke-width="2.6" stroke-linecap="round"/>
  <text x="44" y="28" font-family="Inter, 'Source Sans Pro', 'Helvetica Neue', Arial, sans-serif"
        font-size="22" font-weight="700" fill="#1f2430">appkit</text>
</svg>"""

ICON_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40" viewBox="0 0 40 40">
  <rect x="4" y="4" width="32" height="32" rx="9" fill="#4f46e5"/>
  <path d="M12 14.5h16M12 20h16M12 25.5h10" stroke="#fff" stroke-width="2.6" stroke-linecap="round"/>
</svg>"""
