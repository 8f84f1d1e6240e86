// Map page: S12's footprints.geojson over the imagery (XYZ tiles or georeferenced scenes) and S11's predicted
// mask, with Leaflet served from /static/vendor (no internet needed). Footprints in pixel coordinates (masks
// without CRS) are drawn on a plain pixel grid instead.
"use strict";

function popupText(properties) {
  const area = properties.area_m2 === null || properties.area_m2 === undefined
    ? "area unknown (pixel coordinates)" : `${Number(properties.area_m2).toLocaleString("en-US")} m²`;
  return `<b>${area}</b><br>source tile: ${String(properties.source).replace(/[<>&]/g, "")}`;
}

function overlays(items, kind, opacity) {
  const group = L.layerGroup();
  for (const item of items) {
    L.imageOverlay(`/map/${kind}/${encodeURIComponent(item.name)}.png`, item.bounds, { opacity }).addTo(group);
  }
  return group;
}

async function load() {
  const info = await getJSON("/api/map");
  const geojson = info.footprints ? await getJSON("/download/footprints.geojson") : null;
  const pixel = Boolean(geojson && geojson.pixel_coordinates);
  const map = L.map("map", pixel ? { crs: L.CRS.Simple, minZoom: -5 } : { maxZoom: 23 });
  window.footprintsMap = map;
  const layers = {};
  let bounds = null;
  if (!pixel) {
    if (info.images.length) layers["Imagery"] = overlays(info.images, "image", 1.0).addTo(map);
    if (info.masks.length) layers["Predicted mask"] = overlays(info.masks, "mask", 0.8).addTo(map);
    for (const item of [...info.images, ...info.masks]) {
      bounds = bounds ? bounds.extend(item.bounds) : L.latLngBounds(item.bounds);
    }
  }
  if (geojson) {
    const options = {
      style: { color: "#ffd400", weight: 2, fillOpacity: 0.15 },
      onEachFeature: (feature, layer) => layer.bindPopup(popupText(feature.properties || {})),
    };
    if (pixel) options.coordsToLatLng = c => L.latLng(-c[1], c[0]);   // (column, row), rows grow downwards
    const footprints = L.geoJSON(geojson, options).addTo(map);
    layers["Footprints"] = footprints;
    if (geojson.features.length) bounds = bounds ? bounds.extend(footprints.getBounds()) : footprints.getBounds();
  } else {
    document.getElementById("download").style.display = "none";
  }
  L.control.layers(null, layers, { collapsed: false }).addTo(map);
  L.control.scale().addTo(map);
  if (bounds) map.fitBounds(bounds); else map.setView([0, 0], 2);
  const count = geojson ? geojson.features.length : 0;
  document.getElementById("summary").textContent = geojson
    ? `${count.toLocaleString("en-US")} footprints, ${info.images.length} images, ${info.masks.length} masks`
    : "no footprints.geojson yet: run --make_footprints_pass True";
  document.body.dataset.ready = "1";
}

setupNav("map");
load().catch(showError);
