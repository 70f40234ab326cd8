; Fooocus Guard's Windows installer: per user (no administrator), built on Linux with Debian's
; makensis by scripts/package.sh (function windows_installer). Our own script rather than Tauri's
; bundler, whose NSIS path downloads plugins at build time.
;
; makensis -DVERSION=0.1.0 -DAUMID=dev.fooocus-guard.app -DBIN_DIR=<dir with the .exe files>
;          -DICON=<icon.ico> -DOUT_FILE=<installer.exe> packaging/windows/installer.nsi
;
; Command line of the installer:   /S silent; /D=<folder> install folder (last, unquoted).
; Command line of uninstall.exe:   /S silent; /REMOVEDATA also removes settings and history.

!ifndef VERSION | AUMID | BIN_DIR | ICON | OUT_FILE
  !error "makensis needs -DVERSION, -DAUMID, -DBIN_DIR, -DICON and -DOUT_FILE (scripts/package.sh windows gives them)"
!endif

Unicode true
Target amd64-unicode
ManifestDPIAware true
RequestExecutionLevel user
; The shipped installer: solid LZMA (smallest). CI's test passes -DCOMPRESSOR=zlib: the same
; installer, built in a few seconds instead of minutes.
!ifndef COMPRESSOR
  !define COMPRESSOR "lzma"
!endif
SetCompressor /SOLID ${COMPRESSOR}

!define PRODUCT "Fooocus Guard"
!define APP_EXE "fooocus-guard.exe"
!define CLI_EXE "fooocus-guard-cli.exe"
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\FooocusGuard"
; Written by the app itself (crates/app/src/autostart.rs) when "start with the session" is on.
!define RUN_KEY "Software\Microsoft\Windows\CurrentVersion\Run"
!define RUN_VALUE "FooocusGuard"
; Registers the toasts' sender name and icon for the AppUserModelID.
!define AUMID_KEY "Software\Classes\AppUserModelId\${AUMID}"
; The Evergreen WebView2 Runtime's client id (Microsoft's "Distribute your app and the WebView2
; Runtime": installed when this key's `pv` is present and not 0.0.0.0).
!define WEBVIEW2_KEY "Microsoft\EdgeUpdate\Clients\{F3017226-FE2A-4295-8BDF-00C3A9A7E4C5}"
!define WEBVIEW2_SETUP "MicrosoftEdgeWebview2Setup.exe"
!define WEBVIEW2_URL "https://developer.microsoft.com/microsoft-edge/webview2/"

Name "${PRODUCT}"
OutFile "${OUT_FILE}"
InstallDir "$LOCALAPPDATA\Programs\${PRODUCT}"
; An update goes where the last install went.
InstallDirRegKey HKCU "${UNINSTALL_KEY}" "InstallLocation"
BrandingText "${PRODUCT} ${VERSION}"

VIProductVersion "${VERSION}.0"
VIAddVersionKey "ProductName" "${PRODUCT}"
VIAddVersionKey "FileDescription" "${PRODUCT} installer"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "LegalCopyright" "Fooocus Guard contributors"

!include "MUI2.nsh"
!include "LogicLib.nsh"
!include "FileFunc.nsh"
!include "Sections.nsh"
!include "Win\COM.nsh"
!include "Win\Propkey.nsh"
!include "StrFunc.nsh"
; StrFunc's functions are declared before use; its StrStr compares without regard to case.
${UnStrStr}

!define MUI_ICON "${ICON}"
!define MUI_UNICON "${ICON}"
!define MUI_ABORTWARNING

!define MUI_WELCOMEPAGE_TEXT "This installs ${PRODUCT} ${VERSION} for you only: no administrator rights are needed.$\r$\n$\r$\n${PRODUCT} starts Fooocus, keeps its whole process tree contained, enforces your time, RAM, VRAM and CPU limits and shows what your GPU is doing. It lives in the notification area (the tray).$\r$\n$\r$\nIf ${PRODUCT} is running, quit it from its tray menu first."
!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!define MUI_FINISHPAGE_RUN "$INSTDIR\${APP_EXE}"
!define MUI_FINISHPAGE_RUN_TEXT "Start ${PRODUCT} now"
!insertmacro MUI_PAGE_FINISH

!define MUI_COMPONENTSPAGE_TEXT_TOP "Your settings and history are kept unless you tick the box below, so that a later install finds them again."
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_COMPONENTS
!insertmacro MUI_UNPAGE_INSTFILES

!insertmacro MUI_LANGUAGE "English"

; $0 = 1 when the WebView2 Runtime is installed (per machine or for this user).
Function WebView2Present
  Push $1
  StrCpy $0 0
  ReadRegStr $1 HKLM "SOFTWARE\WOW6432Node\${WEBVIEW2_KEY}" "pv"
  ${If} $1 == ""
    ReadRegStr $1 HKLM "SOFTWARE\${WEBVIEW2_KEY}" "pv"
  ${EndIf}
  ${If} $1 == ""
  ${OrIf} $1 == "0.0.0.0"
    ReadRegStr $1 HKCU "Software\${WEBVIEW2_KEY}" "pv"
  ${EndIf}
  ${If} $1 != ""
  ${AndIf} $1 != "0.0.0.0"
    StrCpy $0 1
  ${EndIf}
  Pop $1
FunctionEnd

; The dashboard window needs Microsoft's WebView2 Runtime (Windows 11 and current Windows 10 have
; it). Nothing is downloaded: Microsoft's bootstrapper is run if it lies beside this installer.
Function OfferWebView2
  Call WebView2Present
  ${If} $0 == 1
    DetailPrint "WebView2 Runtime: installed"
    Return
  ${EndIf}
  DetailPrint "WebView2 Runtime: not installed"
  ${If} ${FileExists} "$EXEDIR\${WEBVIEW2_SETUP}"
    MessageBox MB_YESNO|MB_ICONQUESTION "${PRODUCT}'s dashboard window needs Microsoft's WebView2 Runtime, which this PC does not have.$\r$\n$\r$\nRun Microsoft's installer for it (${WEBVIEW2_SETUP}, found beside this installer) now? It downloads the runtime from Microsoft." /SD IDYES IDNO no_setup
    DetailPrint "Running $EXEDIR\${WEBVIEW2_SETUP}"
    ExecWait '"$EXEDIR\${WEBVIEW2_SETUP}" /silent /install' $1
    DetailPrint "${WEBVIEW2_SETUP} ended with code $1"
    Call WebView2Present
    ${If} $0 != 1
      MessageBox MB_OK|MB_ICONEXCLAMATION "The WebView2 Runtime is still missing (the bootstrapper ended with code $1; it needs an internet connection).$\r$\n$\r$\nInstall the Evergreen WebView2 Runtime from ${WEBVIEW2_URL} later; until then the tray, notifications and fooocus-guard-cli work, but the dashboard window cannot open." /SD IDOK
    ${EndIf}
    Return
    no_setup:
  ${EndIf}
  MessageBox MB_OK|MB_ICONEXCLAMATION "${PRODUCT}'s dashboard window needs Microsoft's WebView2 Runtime, which this PC does not have.$\r$\n$\r$\nInstall the Evergreen WebView2 Runtime ('Evergreen Bootstrapper') from$\r$\n${WEBVIEW2_URL}$\r$\nthen start ${PRODUCT} again. Until then the tray, notifications and fooocus-guard-cli work, but the dashboard window cannot open." /SD IDOK
FunctionEnd

; A running app holds its .exe: ask the user to quit it rather than leave a half-updated folder.
!macro FreeFile FILE
  ${Do}
    ClearErrors
    ${IfNot} ${FileExists} "${FILE}"
      ${Break}
    ${EndIf}
    Delete "${FILE}"
    ${IfNot} ${Errors}
      ${Break}
    ${EndIf}
    MessageBox MB_RETRYCANCEL|MB_ICONEXCLAMATION "${FILE} is in use: ${PRODUCT} is probably running.$\r$\n$\r$\nQuit it from its tray icon's menu (Quit), then press Retry." /SD IDCANCEL IDRETRY +2
    Abort "${FILE} is in use: quit ${PRODUCT} from its tray menu and run this again."
  ${Loop}
!macroend

; Sets the AppUserModelID of the shortcut $0 (IShellLink's IPropertyStore, PKEY_AppUserModel_ID;
; NSIS's own Win\COM.nsh and Win\Propkey.nsh) so that Windows shows the app's toasts under
; "Fooocus Guard".
Function SetShortcutAumid
  Push $1
  Push $2
  Push $3
  Push $4
  Push $5
  Push $6
  Push $7
  StrCpy $5 -1
  !insertmacro ComHlpr_CreateInProcInstance ${CLSID_ShellLink} ${IID_IShellLink} r1 ""
  ${If} $1 P<> 0
    ${IUnknown::QueryInterface} $1 '("${IID_IPersistFile}",.r2)'
    ${If} $2 P<> 0
      ${IPersistFile::Load} $2 '("$0",${STGM_READWRITE}).r5'
      ${If} $5 = 0
        ${IUnknown::QueryInterface} $1 '("${IID_IPropertyStore}",.r3)'
        ${If} $3 P<> 0
          System::Call '*${SYSSTRUCT_PROPERTYKEY}(${PKEY_AppUserModel_ID})p.r4'
          ; The PROPVARIANT's string: a buffer of its own, pointed at (VT_LPWSTR).
          System::Call '*(&w${NSIS_MAX_STRLEN} "${AUMID}")p.r6'
          System::Call '*${SYSSTRUCT_PROPVARIANT}(${VT_LPWSTR},,p r6)p.r7'
          ${IPropertyStore::SetValue} $3 '($4,$7).r5'
          ${If} $5 = 0
            ${IPropertyStore::Commit} $3 '().r5'
          ${EndIf}
          System::Free $4
          System::Free $6
          System::Free $7
          ${IUnknown::Release} $3 ""
        ${Else}
          StrCpy $5 -2
        ${EndIf}
      ${EndIf}
      ${If} $5 = 0
        ${IPersistFile::Save} $2 '("$0",1).r5'
      ${EndIf}
      ${IUnknown::Release} $2 ""
    ${EndIf}
    ${IUnknown::Release} $1 ""
  ${EndIf}
  ${If} $5 = 0
    DetailPrint "Start-menu shortcut's AppUserModelID: ${AUMID}"
  ${Else}
    DetailPrint "Cannot set the Start-menu shortcut's AppUserModelID (error $5): toasts may show under another name"
  ${EndIf}
  Pop $7
  Pop $6
  Pop $5
  Pop $4
  Pop $3
  Pop $2
  Pop $1
FunctionEnd

Section "${PRODUCT}" SecApp
  SectionIn RO
  SetOutPath "$INSTDIR"
  !insertmacro FreeFile "$INSTDIR\${APP_EXE}"
  !insertmacro FreeFile "$INSTDIR\${CLI_EXE}"
  File "${BIN_DIR}\${APP_EXE}"
  File "${BIN_DIR}\${CLI_EXE}"
  ; The GNU build of the WebView2 glue loads this DLL beside the app.
  File "${BIN_DIR}\WebView2Loader.dll"
  File "/oname=fooocus-guard.ico" "${ICON}"
  WriteUninstaller "$INSTDIR\uninstall.exe"

  ; The shortcut and the registered id: toasts then say "Fooocus Guard", with its icon.
  CreateShortcut "$SMPROGRAMS\${PRODUCT}.lnk" "$INSTDIR\${APP_EXE}" "" "$INSTDIR\${APP_EXE}" 0 SW_SHOWNORMAL "" "Starts, contains and watches Fooocus"
  StrCpy $0 "$SMPROGRAMS\${PRODUCT}.lnk"
  Call SetShortcutAumid
  WriteRegStr HKCU "${AUMID_KEY}" "DisplayName" "${PRODUCT}"
  WriteRegStr HKCU "${AUMID_KEY}" "IconUri" "$INSTDIR\fooocus-guard.ico"

  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayName" "${PRODUCT}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "Publisher" "Fooocus Guard"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\${APP_EXE},0"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKCU "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoRepair" 1
  ${GetSize} "$INSTDIR" "/S=0K" $0 $1 $2
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "EstimatedSize" $0

  Call OfferWebView2
SectionEnd

; The uninstaller ---------------------------------------------------------------------------------

Section "un.${PRODUCT}" UnSecApp
  SectionIn RO
  !insertmacro FreeFile "$INSTDIR\${APP_EXE}"
  Delete "$INSTDIR\${CLI_EXE}"
  Delete "$INSTDIR\WebView2Loader.dll"
  Delete "$INSTDIR\fooocus-guard.ico"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
  Delete "$SMPROGRAMS\${PRODUCT}.lnk"
  DeleteRegKey HKCU "${AUMID_KEY}"
  ; The start-with-session entry only if it starts this copy: another copy of the app (a portable
  ; one, or an install elsewhere) may have written it since.
  ReadRegStr $0 HKCU "${RUN_KEY}" "${RUN_VALUE}"
  ${UnStrStr} $1 $0 "$INSTDIR\${APP_EXE}"
  ${If} $1 != ""
    DeleteRegValue HKCU "${RUN_KEY}" "${RUN_VALUE}"
  ${ElseIf} $0 != ""
    DetailPrint "Kept the start-with-session entry: it starts another copy ($0)"
  ${EndIf}
  DeleteRegKey HKCU "${UNINSTALL_KEY}"
SectionEnd

; Off unless ticked (or /REMOVEDATA): the config, the history and logs, the dashboard's WebView2
; data. A Fooocus that the app installed (data\Fooocus: its models and your images) is kept.
Section /o "un.Also remove my settings and history" UnSecData
  RMDir /r "$APPDATA\fooocus-guard"
  RMDir /r "$LOCALAPPDATA\dev.fooocus-guard.app"
  ${If} ${FileExists} "$LOCALAPPDATA\fooocus-guard\data\Fooocus\*.*"
    DetailPrint "Kept $LOCALAPPDATA\fooocus-guard\data\Fooocus (Fooocus itself, its models and your images): delete it yourself if you no longer want it."
    FindFirst $0 $1 "$LOCALAPPDATA\fooocus-guard\data\*"
    ${DoWhile} $1 != ""
      ${If} $1 != "."
      ${AndIf} $1 != ".."
      ${AndIf} $1 != "Fooocus"
        RMDir /r "$LOCALAPPDATA\fooocus-guard\data\$1"
        Delete "$LOCALAPPDATA\fooocus-guard\data\$1"
      ${EndIf}
      FindNext $0 $1
    ${Loop}
    FindClose $0
  ${Else}
    RMDir /r "$LOCALAPPDATA\fooocus-guard"
  ${EndIf}
SectionEnd

!insertmacro MUI_UNFUNCTION_DESCRIPTION_BEGIN
  !insertmacro MUI_DESCRIPTION_TEXT ${UnSecApp} "The program, its Start-menu shortcut and its start-with-session entry."
  !insertmacro MUI_DESCRIPTION_TEXT ${UnSecData} "Your settings (%APPDATA%\fooocus-guard) and history and logs (%LOCALAPPDATA%\fooocus-guard). A Fooocus that ${PRODUCT} installed for you is kept either way."
!insertmacro MUI_UNFUNCTION_DESCRIPTION_END

Function un.onInit
  ${GetParameters} $0
  ClearErrors
  ${GetOptions} $0 "/REMOVEDATA" $1
  ${IfNot} ${Errors}
    !insertmacro SelectSection ${UnSecData}
  ${EndIf}
FunctionEnd
