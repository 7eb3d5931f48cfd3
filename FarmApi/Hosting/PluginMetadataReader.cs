using System.Reflection;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;

namespace FarmApi.Hosting;

/// <summary>A plug-in registration read from an assembly's metadata.</summary>
/// <param name="Name">The registered name.</param>
/// <param name="TypeName">The registered class's full name.</param>
/// <param name="ApiVersion">The attribute's API version (the host's when the attribute does not set it).</param>
/// <param name="Description">The attribute's description.</param>
/// <param name="FarmApiVersion">The version of the FarmApi assembly the plug-in references.</param>
/// <param name="MissingDependencies">Referenced assemblies found neither beside it nor in the host.</param>
/// <param name="TypeError">Why the registered class cannot be a plug-in, when its metadata already tells (abstract, not public,
/// no public parameterless constructor, not a <see cref="BaseFarmPlugin"/>); null when it looks right or lives elsewhere.</param>
internal sealed record FoundPlugin(string Name, string TypeName, string ApiVersion, string? Description, Version? FarmApiVersion,
    IReadOnlyList<string> MissingDependencies, string? TypeError = null);

/// <summary>Reads <see cref="FarmPluginAttribute"/>s and assembly references without loading the assembly: no plug-in code runs.</summary>
internal static class PluginMetadataReader
{
    private static readonly Lazy<HashSet<string>> PlatformAssemblies = new(() =>
        new HashSet<string>(((AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES") as string) ?? string.Empty)
            .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(Path.GetFileNameWithoutExtension)
            .OfType<string>(), StringComparer.OrdinalIgnoreCase));

    public static IReadOnlyList<FoundPlugin> Read(string assemblyPath, out string? error)
    {
        error = null;
        try
        {
            using var stream = new FileStream(assemblyPath, FileMode.Open, FileAccess.Read, FileShare.Read);
            using var pe = new PEReader(stream);
            if (!pe.HasMetadata)
            {
                error = "not a .NET assembly (no metadata)";
                return [];
            }

            var reader = pe.GetMetadataReader();
            if (!reader.IsAssembly)
            {
                error = "not a .NET assembly (a module without an assembly manifest)";
                return [];
            }

            var folder = Path.GetDirectoryName(assemblyPath)!;
            Version? farmApi = null;
            var missing = new List<string>();
            foreach (var handle in reader.AssemblyReferences)
            {
                var reference = reader.GetAssemblyReference(handle);
                var name = reader.GetString(reference.Name);
                if (name == "FarmApi")
                {
                    farmApi = reference.Version;
                }
                else if (!IsProvided(name, folder))
                {
                    missing.Add($"{name} {reference.Version}");
                }
            }

            var found = new List<FoundPlugin>();
            foreach (var handle in reader.GetAssemblyDefinition().GetCustomAttributes())
            {
                var attribute = reader.GetCustomAttribute(handle);
                if (!IsFarmPluginAttribute(reader, attribute.Constructor))
                {
                    continue;
                }

                CustomAttributeValue<string> value;
                try
                {
                    value = attribute.DecodeValue(new TypeNameProvider());
                }
                catch (BadImageFormatException ex)
                {
                    error = $"a FarmPlugin attribute cannot be read: {ex.Message}";
                    continue;
                }

                if (value.FixedArguments.Length < 2 || value.FixedArguments[0].Value is not string typeName
                    || value.FixedArguments[1].Value is not string pluginName || string.IsNullOrWhiteSpace(pluginName))
                {
                    error = "a FarmPlugin attribute has no plug-in type or name";
                    continue;
                }

                var apiVersion = FarmApiInfo.ApiVersion;
                string? description = null;
                foreach (var named in value.NamedArguments)
                {
                    if (named.Name == nameof(FarmPluginAttribute.ApiVersion) && named.Value is string version)
                    {
                        apiVersion = version;
                    }
                    else if (named.Name == nameof(FarmPluginAttribute.Description) && named.Value is string text)
                    {
                        description = text;
                    }
                }

                // typeof(X) is serialized as "Namespace.X" or an assembly-qualified name.
                var comma = typeName.IndexOf(',', StringComparison.Ordinal);
                var pluginType = comma < 0 ? typeName : typeName[..comma].Trim();
                found.Add(new FoundPlugin(pluginName, pluginType, apiVersion, description, farmApi, missing,
                    comma < 0 ? CheckPluginType(reader, pluginType) : null));
            }

            if (found.Count == 0 && error is null)
            {
                error = "no [assembly: FarmPlugin(...)] attribute: this assembly registers no farm plug-in";
            }

            return found;
        }
        catch (BadImageFormatException)
        {
            error = "not a .NET assembly";
            return [];
        }
        catch (IOException ex)
        {
            error = $"cannot be read: {ex.Message}";
            return [];
        }
        catch (UnauthorizedAccessException ex)
        {
            error = $"cannot be read: {ex.Message}";
            return [];
        }
    }

    /// <summary>What the registered class's own metadata says against it; null when it looks like a plug-in or is not defined here.</summary>
    private static string? CheckPluginType(MetadataReader reader, string typeName)
    {
        var dot = typeName.LastIndexOf('.');
        var typeNamespace = dot < 0 ? string.Empty : typeName[..dot];
        var name = dot < 0 ? typeName : typeName[(dot + 1)..];
        TypeDefinition? found = null;
        foreach (var handle in reader.TypeDefinitions)
        {
            var candidate = reader.GetTypeDefinition(handle);
            if (candidate.GetDeclaringType().IsNil && reader.StringComparer.Equals(candidate.Name, name)
                && reader.StringComparer.Equals(candidate.Namespace, typeNamespace))
            {
                found = candidate;
                break;
            }
        }

        if (found is not { } type)
        {
            return null; // a nested type, or one from another assembly: the loader decides
        }

        if ((type.Attributes & TypeAttributes.Interface) != 0 || !DerivesFromBaseFarmPlugin(reader, type, out var known) && known)
        {
            return $"'{typeName}' does not derive from FarmApi.BaseFarmPlugin";
        }

        if ((type.Attributes & TypeAttributes.Abstract) != 0)
        {
            return $"'{typeName}' is abstract: register a concrete class";
        }

        var hasConstructor = false;
        foreach (var handle in type.GetMethods())
        {
            var method = reader.GetMethodDefinition(handle);
            if ((method.Attributes & MethodAttributes.MemberAccessMask) == MethodAttributes.Public
                && (method.Attributes & MethodAttributes.Static) == 0 && reader.StringComparer.Equals(method.Name, ".ctor"))
            {
                var signature = reader.GetBlobReader(method.Signature);
                signature.ReadSignatureHeader();
                hasConstructor |= signature.ReadCompressedInteger() == 0;
            }
        }

        if ((type.Attributes & TypeAttributes.VisibilityMask) != TypeAttributes.Public || !hasConstructor)
        {
            return $"'{typeName}' needs to be public with a public parameterless constructor";
        }

        return null;
    }

    /// <summary>Follows base types inside this assembly; <paramref name="known"/> is false when the chain leaves it for a type other than BaseFarmPlugin or System.Object.</summary>
    private static bool DerivesFromBaseFarmPlugin(MetadataReader reader, TypeDefinition type, out bool known)
    {
        for (var depth = 0; depth < 100; depth++)
        {
            var baseType = type.BaseType;
            switch (baseType.Kind)
            {
                case HandleKind.TypeDefinition:
                    type = reader.GetTypeDefinition((TypeDefinitionHandle)baseType);
                    continue;
                case HandleKind.TypeReference:
                    var reference = reader.GetTypeReference((TypeReferenceHandle)baseType);
                    if (reader.StringComparer.Equals(reference.Namespace, "FarmApi") && reader.StringComparer.Equals(reference.Name, nameof(BaseFarmPlugin)))
                    {
                        known = true;
                        return true;
                    }

                    // System.Object (or a value type): certainly not a plug-in; any other type lives elsewhere.
                    known = reader.StringComparer.Equals(reference.Namespace, "System")
                        && (reader.StringComparer.Equals(reference.Name, "Object") || reader.StringComparer.Equals(reference.Name, "ValueType")
                            || reader.StringComparer.Equals(reference.Name, "Enum") || reader.StringComparer.Equals(reference.Name, "MulticastDelegate"));
                    return false;
                default:
                    // No base type (System.Object itself) is certainly not a plug-in; a generic instantiation is left to the loader.
                    known = baseType.IsNil;
                    return false;
            }
        }

        known = false;
        return false;
    }

    private static bool IsProvided(string name, string folder)
    {
        if (PlatformAssemblies.Value.Contains(name) || name is "netstandard" or "mscorlib")
        {
            return true;
        }

        if (File.Exists(Path.Combine(folder, name + ".dll")))
        {
            return true;
        }

        // Runtime-specific assets (runtimes/<rid>/lib/...) count too.
        var runtimes = Path.Combine(folder, "runtimes");
        return Directory.Exists(runtimes) && Directory.EnumerateFiles(runtimes, name + ".dll", SearchOption.AllDirectories).Any();
    }

    private static bool IsFarmPluginAttribute(MetadataReader reader, EntityHandle constructor)
    {
        StringHandle typeName;
        StringHandle typeNamespace;
        switch (constructor.Kind)
        {
            case HandleKind.MemberReference:
                var member = reader.GetMemberReference((MemberReferenceHandle)constructor);
                if (member.Parent.Kind != HandleKind.TypeReference)
                {
                    return false;
                }

                var reference = reader.GetTypeReference((TypeReferenceHandle)member.Parent);
                typeName = reference.Name;
                typeNamespace = reference.Namespace;
                break;
            case HandleKind.MethodDefinition:
                var method = reader.GetMethodDefinition((MethodDefinitionHandle)constructor);
                var definition = reader.GetTypeDefinition(method.GetDeclaringType());
                typeName = definition.Name;
                typeNamespace = definition.Namespace;
                break;
            default:
                return false;
        }

        return reader.StringComparer.Equals(typeName, nameof(FarmPluginAttribute))
            && reader.StringComparer.Equals(typeNamespace, "FarmApi");
    }

    private sealed class TypeNameProvider : ICustomAttributeTypeProvider<string>
    {
        public string GetPrimitiveType(PrimitiveTypeCode typeCode) => typeCode.ToString();

        public string GetSystemType() => "System.Type";

        public string GetSZArrayType(string elementType) => elementType + "[]";

        public string GetTypeFromDefinition(MetadataReader reader, TypeDefinitionHandle handle, byte rawTypeKind)
        {
            var definition = reader.GetTypeDefinition(handle);
            return $"{reader.GetString(definition.Namespace)}.{reader.GetString(definition.Name)}";
        }

        public string GetTypeFromReference(MetadataReader reader, TypeReferenceHandle handle, byte rawTypeKind)
        {
            var reference = reader.GetTypeReference(handle);
            return $"{reader.GetString(reference.Namespace)}.{reader.GetString(reference.Name)}";
        }

        public string GetTypeFromSerializedName(string name) => name;

        public PrimitiveTypeCode GetUnderlyingEnumType(string type) => PrimitiveTypeCode.Int32;

        public bool IsSystemType(string type) => type is "System.Type" or "[System.Runtime]System.Type";
    }
}
