"""Model testing you can look at: the HTML page, its plots and heatmaps."""
