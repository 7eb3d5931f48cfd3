# Builds the Blender test scene:
#   blender -b --factory-startup --python-exit-code 1 --python make_scene.py -- OUT.blend TEXTURE.png SHARED.png
import sys

import bpy

out, texture, shared = sys.argv[sys.argv.index("--") + 1:][:3]
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 8
scene.cycles.seed = 7
scene.cycles.use_adaptive_sampling = False
scene.cycles.use_denoising = False
scene.render.resolution_x = 64
scene.render.resolution_y = 48
scene.render.resolution_percentage = 100
scene.render.dither_intensity = 0.0
scene.frame_start = 1
scene.frame_end = 3
scene.frame_current = 2

camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
scene.collection.objects.link(camera)
camera.location = (0.0, -7.0, 3.5)
camera.rotation_euler = (1.15, 0.0, 0.0)
scene.camera = camera

sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
sun.data.energy = 3.0
sun.rotation_euler = (0.6, 0.3, 0.2)
scene.collection.objects.link(sun)

world = bpy.data.worlds.new("World")
world.use_nodes = True
world.node_tree.nodes["Background"].inputs[0].default_value = (0.25, 0.35, 0.6, 1.0)
scene.world = world

# The texture is loaded by absolute path, as artists often leave it: the adapter must stage and remap it.
image = bpy.data.images.load(texture)
material = bpy.data.materials.new("Textured")
material.use_nodes = True
nodes = material.node_tree.nodes
node = nodes.new("ShaderNodeTexImage")
node.image = image
node.interpolation = "Closest"
material.node_tree.links.new(node.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])

# A second texture lives outside the scene's folder: staged under _ext/ and remapped.
stripes = bpy.data.materials.new("Stripes")
stripes.use_nodes = True
stripe_node = stripes.node_tree.nodes.new("ShaderNodeTexImage")
stripe_node.image = bpy.data.images.load(shared)
stripe_node.interpolation = "Closest"
stripes.node_tree.links.new(stripe_node.outputs["Color"], stripes.node_tree.nodes["Principled BSDF"].inputs["Base Color"])

bpy.ops.mesh.primitive_plane_add(size=8.0)
bpy.context.active_object.data.materials.append(material)
bpy.ops.mesh.primitive_cube_add(size=1.2, location=(-1.5, 0.5, 0.6))
bpy.context.active_object.data.materials.append(stripes)
bpy.ops.mesh.primitive_uv_sphere_add(radius=0.7, location=(1.2, 0.0, 0.7))
ball = bpy.context.active_object
ball.location = (0.5, 0.0, 0.7)
ball.keyframe_insert("location", frame=1)
ball.location = (2.5, 0.0, 1.4)
ball.keyframe_insert("location", frame=3)

bpy.ops.wm.save_as_mainfile(filepath=out, relative_remap=False)
